//! Integrated gradients at the word embeddings (Sundararajan et al. 2017; methods.md §7), as
//! captum's `IntegratedGradients` on HF `inputs_embeds`: attribution = (x − x′) ⊙ Σᵢ wᵢ
//! ∇f(x′ + αᵢ(x − x′)), summed over hidden dims per token. Position and token-type embeddings are
//! added inside the model as usual (they are not part of the path).

use candle_core::{DType, Tensor, Var, D};

use crate::error::{GenolensError, Result};
use crate::model::{Batch, HookPoint, HookedModel, Hooks, Intervention};

/// The quadrature of the path integral.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quadrature {
    /// Gauss–Legendre nodes on [0, 1] (captum's default, `gausslegendre`).
    GaussLegendre,
    /// Equally spaced points with the trapezoid rule (captum's `riemann_trapezoid`).
    RiemannTrapezoid,
}

/// The path's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// All-zero word embeddings (positions and token types kept).
    Zero,
    /// Every k-mer token's embedding replaced by [MASK]'s ([CLS], [SEP] and padding kept).
    Mask,
}

/// What a class's score is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetKind {
    /// The class's logit (the default).
    #[default]
    Logit,
    /// The class's log-probability (log-softmax over the classes).
    LogProbability,
}

/// How integrated gradients runs.
#[derive(Debug, Clone, Copy)]
pub struct IgSettings {
    /// Path points.
    pub steps: usize,
    /// Quadrature rule.
    pub quadrature: Quadrature,
    /// Baseline.
    pub baseline: Baseline,
    /// Path points per forward pass (each point is a copy of the batch).
    pub points_per_pass: usize,
    /// Logit or log-probability of the target class.
    pub target_kind: TargetKind,
}

impl Default for IgSettings {
    fn default() -> Self {
        IgSettings {
            steps: 50,
            quadrature: Quadrature::GaussLegendre,
            baseline: Baseline::Zero,
            points_per_pass: 8,
            target_kind: TargetKind::Logit,
        }
    }
}

/// Path points α and weights w on [0, 1], as captum makes them.
pub fn path_points(steps: usize, quadrature: Quadrature) -> (Vec<f64>, Vec<f64>) {
    match quadrature {
        Quadrature::RiemannTrapezoid => {
            if steps < 2 {
                return (vec![1.0], vec![1.0]);
            }
            let h = 1.0 / (steps - 1) as f64;
            let alphas = (0..steps).map(|i| i as f64 * h).collect();
            let mut weights = vec![h; steps];
            weights[0] *= 0.5;
            weights[steps - 1] *= 0.5;
            (alphas, weights)
        }
        Quadrature::GaussLegendre => {
            let (nodes, weights) = gauss_legendre(steps);
            (
                nodes.iter().map(|x| 0.5 * (1.0 + x)).collect(),
                weights.iter().map(|w| 0.5 * w).collect(),
            )
        }
    }
}

/// Gauss–Legendre nodes (ascending) and weights on [−1, 1] (numpy's `leggauss`), by Newton's
/// method on the Legendre polynomial.
pub fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut nodes = vec![0.0; n];
    let mut weights = vec![0.0; n];
    for i in 0..n {
        let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut derivative = 1.0;
        for _ in 0..100 {
            let (mut p0, mut p1) = (1.0, x);
            for j in 2..=n {
                let p2 = ((2 * j - 1) as f64 * x * p1 - (j - 1) as f64 * p0) / j as f64;
                p0 = p1;
                p1 = p2;
            }
            derivative = n as f64 * (x * p1 - p0) / (x * x - 1.0);
            let step = p1 / derivative;
            x -= step;
            if step.abs() < 1e-16 {
                break;
            }
        }
        nodes[n - 1 - i] = x;
        weights[n - 1 - i] = 2.0 / ((1.0 - x * x) * derivative * derivative);
    }
    (nodes, weights)
}

/// Integrated gradients of one sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct IgResult {
    /// Attribution per token ([CLS] = 0, padding excluded), summed over hidden dims.
    pub scores: Vec<f32>,
    /// f(x): the target at the input.
    pub target_at_input: f64,
    /// f(x′): the target at the baseline.
    pub target_at_baseline: f64,
    /// Σ scores − (f(x) − f(x′)).
    pub completeness_gap: f64,
}

/// Integrated gradients of each row's `targets[row]` logit (or log-probability). `mask_id` is the [MASK] token id and
/// `special` the ids kept by the mask baseline ([CLS], [SEP], padding).
pub fn integrated_gradients(
    model: &HookedModel,
    batch: &Batch,
    targets: &[usize],
    settings: &IgSettings,
    mask_id: u32,
    special: &[u32],
) -> Result<Vec<IgResult>> {
    let rows = batch.size();
    if targets.len() != rows || settings.steps == 0 || settings.points_per_pass == 0 {
        return Err(GenolensError::argument(
            "integrated gradients",
            "one target per sequence, at least one step and one point per pass",
        ));
    }
    let input = model.word_embeddings(&batch.ids)?;
    let baseline = match settings.baseline {
        Baseline::Zero => input.zeros_like()?,
        Baseline::Mask => {
            let ids: Vec<Vec<u32>> = batch.ids.to_vec2()?;
            let masked: Vec<u32> = ids
                .iter()
                .flatten()
                .map(|&id| if special.contains(&id) { id } else { mask_id })
                .collect();
            let masked = Tensor::from_vec(masked, batch.ids.shape(), batch.ids.device())?;
            model.word_embeddings(&masked)?
        }
    };
    let difference = (&input - &baseline)?;
    let target_values = |embedding: &Tensor| -> Result<Vec<f64>> {
        let logits = scores_with_embedding(model, batch, embedding, settings.target_kind)?;
        let logits: Vec<Vec<f32>> = logits.to_dtype(DType::F32)?.to_vec2()?;
        Ok(targets
            .iter()
            .zip(&logits)
            .map(|(&t, row)| f64::from(row[t]))
            .collect())
    };
    let at_input = target_values(&input)?;
    let at_baseline = target_values(&baseline)?;
    let (alphas, weights) = path_points(settings.steps, settings.quadrature);
    let mut summed: Option<Tensor> = None;
    for (alpha_chunk, weight_chunk) in alphas
        .chunks(settings.points_per_pass)
        .zip(weights.chunks(settings.points_per_pass))
    {
        let points = alpha_chunk.len();
        let path = alpha_chunk
            .iter()
            .map(|&a| &baseline + (&difference * a)?)
            .collect::<candle_core::Result<Vec<_>>>()?;
        let path = Tensor::cat(&path, 0)?;
        let variable = Var::from_tensor(&path)?;
        let repeated = Batch {
            ids: batch.ids.repeat((points, 1))?,
            attention_mask: batch.attention_mask.repeat((points, 1))?,
            lengths: (0..points).flat_map(|_| batch.lengths.clone()).collect(),
            ends_with_special: batch.ends_with_special,
        };
        let logits =
            scores_with_embedding(model, &repeated, variable.as_tensor(), settings.target_kind)?;
        // Σ over points and rows of wᵢ·logit[row, target]: the gradient at each point is wᵢ∇f.
        let mut selector = vec![0f32; points * rows * logits.dim(1)?];
        let classes = logits.dim(1)?;
        for (p, &w) in weight_chunk.iter().enumerate() {
            for (r, &t) in targets.iter().enumerate() {
                selector[(p * rows + r) * classes + t] = w as f32;
            }
        }
        let selector = Tensor::from_vec(selector, (points * rows, classes), logits.device())?
            .to_dtype(logits.dtype())?;
        let objective = (logits * selector)?.sum_all()?;
        let gradients = objective.backward()?;
        let gradient = gradients.get(variable.as_tensor()).ok_or_else(|| {
            GenolensError::hook("hook_embed", "no gradient reached the embeddings")
        })?;
        let (_, t, d) = input.dims3()?;
        let gradient = gradient.reshape((points, rows, t, d))?.sum(0)?;
        summed = Some(match summed {
            Some(s) => (s + gradient)?,
            None => gradient,
        });
    }
    let summed = summed.expect("at least one step");
    let scores: Vec<Vec<f32>> = (difference * summed)?
        .sum(D::Minus1)?
        .to_dtype(DType::F32)?
        .to_vec2()?;
    Ok(scores
        .into_iter()
        .enumerate()
        .map(|(row, mut s)| {
            s.truncate(batch.lengths[row]);
            let total: f64 = s.iter().map(|&v| f64::from(v)).sum();
            IgResult {
                completeness_gap: total - (at_input[row] - at_baseline[row]),
                scores: s,
                target_at_input: at_input[row],
                target_at_baseline: at_baseline[row],
            }
        })
        .collect())
}

/// The classifier's logits (or log-probabilities) [b, classes] with `embedding` as the word
/// embeddings.
fn scores_with_embedding(
    model: &HookedModel,
    batch: &Batch,
    embedding: &Tensor,
    kind: TargetKind,
) -> Result<Tensor> {
    let hooks = Hooks::none().intervene(
        HookPoint::Embed,
        Intervention::Replace {
            value: embedding.clone(),
            positions: None,
            heads: None,
        },
    );
    super::class_scores(model, batch, &hooks, kind, "integrated gradients")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_legendre_integrates_polynomials_exactly() {
        let (nodes, weights) = gauss_legendre(5);
        assert!(nodes.windows(2).all(|w| w[0] < w[1]));
        // Exact up to degree 2n − 1 = 9: ∫₋₁¹ x⁸ = 2/9.
        let integral: f64 = nodes.iter().zip(&weights).map(|(x, w)| w * x.powi(8)).sum();
        assert!((integral - 2.0 / 9.0).abs() < 1e-14);
        let (alphas, w) = path_points(50, Quadrature::GaussLegendre);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-13);
        assert!(alphas.iter().all(|&a| a > 0.0 && a < 1.0));
        let (alphas, w) = path_points(5, Quadrature::RiemannTrapezoid);
        assert_eq!(alphas, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-15);
    }
}
