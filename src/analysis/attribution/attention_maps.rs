//! Attribution read off the attention maps (methods.md §7): DNABERT's own attention score (last
//! layer, [CLS] row, summed over heads), attention rollout (Abnar & Zuidema 2020) and GradCAM on
//! the last layer's attention (Chefer et al.'s baseline). Only each sequence's valid rows and
//! columns are read; scores are per token, [CLS] = 0.

use candle_core::{DType, Tensor, Var};

use crate::error::{GenolensError, Result};
use crate::model::{Batch, BlockSite, HookPoint, HookedModel, Hooks, Intervention};

/// The attention-map attributions of one sequence, one value per valid token.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionMaps {
    /// Σ over heads of the last layer's [CLS] row.
    pub attention: Vec<f32>,
    /// [CLS] row of Â_{L−1} ⋯ Â_0, Â_l = row-normalised (mean_h A_l + I).
    pub rollout: Vec<f32>,
    /// [CLS] row of mean_h (A_h · mean(∂y/∂A_h))⁺ on the last layer.
    pub gradcam: Vec<f32>,
}

/// The three attention-map attributions of every sequence of `batch` for the logit of
/// `targets[row]`.
pub fn attention_maps(
    model: &HookedModel,
    batch: &Batch,
    targets: &[usize],
) -> Result<Vec<AttentionMaps>> {
    let layers = model.config().num_hidden_layers;
    let last = HookPoint::block(layers - 1, BlockSite::Pattern);
    let hooks = Hooks::none().capture("blocks.*.attn.hook_pattern")?;
    let output = model.forward(batch, &hooks)?;
    let patterns: Vec<Tensor> = (0..layers)
        .map(|l| {
            output
                .cache
                .get_point(HookPoint::block(l, BlockSite::Pattern))
                .expect("captured")
                .to_dtype(DType::F32)
        })
        .collect::<candle_core::Result<_>>()?;
    // ∂y/∂A of the last layer: the same forward with that pattern as a leaf.
    let variable = Var::from_tensor(&patterns[layers - 1].to_dtype(output.cls.dtype())?)?;
    let hooks = Hooks::none().intervene(
        last,
        Intervention::Replace {
            value: variable.as_tensor().clone(),
            positions: None,
            heads: None,
        },
    );
    let logits = super::class_scores(
        model,
        batch,
        &hooks,
        super::TargetKind::Logit,
        "attention GradCAM",
    )?;
    let classes = logits.dim(1)?;
    let mut selector = vec![0f32; batch.size() * classes];
    for (row, &t) in targets.iter().enumerate() {
        if t >= classes {
            return Err(GenolensError::argument(
                "target",
                format!("class {t} is out of range: the classifier has {classes} classes"),
            ));
        }
        selector[row * classes + t] = 1.0;
    }
    let selector = Tensor::from_vec(selector, (batch.size(), classes), logits.device())?
        .to_dtype(logits.dtype())?;
    let gradients = (logits * selector)?.sum_all()?.backward()?;
    let gradient = gradients
        .get(variable.as_tensor())
        .ok_or_else(|| GenolensError::hook(last.to_string(), "no gradient reached the pattern"))?
        .to_dtype(DType::F32)?;

    let maps: Vec<Vec<Vec<Vec<Vec<f32>>>>> = patterns
        .iter()
        .map(to_vec4)
        .collect::<candle_core::Result<_>>()?;
    let gradient = to_vec4(&gradient)?;
    let heads = maps[0][0].len();
    Ok((0..batch.size())
        .map(|row| {
            let n = batch.lengths[row];
            let last_map = &maps[layers - 1][row];
            let attention = (0..n)
                .map(|k| (0..heads).map(|h| last_map[h][0][k]).sum())
                .collect();
            // Rollout over the valid n × n block.
            let mut rollout: Vec<Vec<f64>> = identity(n);
            for layer in &maps {
                let a = &layer[row];
                let mut hat = vec![vec![0.0f64; n]; n];
                for (q, hat_row) in hat.iter_mut().enumerate() {
                    for (k, value) in hat_row.iter_mut().enumerate() {
                        let mean: f64 =
                            (0..heads).map(|h| f64::from(a[h][q][k])).sum::<f64>() / heads as f64;
                        *value = mean + f64::from(u8::from(q == k));
                    }
                    let total: f64 = hat_row.iter().sum();
                    hat_row.iter_mut().for_each(|v| *v /= total);
                }
                rollout = multiply(&hat, &rollout);
            }
            let rollout = rollout[0].iter().map(|&v| v as f32).collect();
            // GradCAM: per head, A_h × mean over the valid block of ∂y/∂A_h; clamp; mean heads.
            let g = &gradient[row];
            let weights: Vec<f64> = (0..heads)
                .map(|h| {
                    let total: f64 = (0..n)
                        .flat_map(|q| (0..n).map(move |k| (q, k)))
                        .map(|(q, k)| f64::from(g[h][q][k]))
                        .sum();
                    total / (n * n) as f64
                })
                .collect();
            let gradcam = (0..n)
                .map(|k| {
                    let total: f64 = (0..heads)
                        .map(|h| (f64::from(last_map[h][0][k]) * weights[h]).max(0.0))
                        .sum();
                    (total / heads as f64) as f32
                })
                .collect();
            AttentionMaps {
                attention,
                rollout,
                gradcam,
            }
        })
        .collect())
}

fn to_vec4(t: &Tensor) -> candle_core::Result<Vec<Vec<Vec<Vec<f32>>>>> {
    (0..t.dim(0)?).map(|b| t.get(b)?.to_vec3()).collect()
}

fn identity(n: usize) -> Vec<Vec<f64>> {
    (0..n)
        .map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect())
        .collect()
}

fn multiply(a: &[Vec<f64>], b: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = b.first().map_or(0, Vec::len);
    a.iter()
        .map(|row| {
            (0..n)
                .map(|j| row.iter().zip(b).map(|(x, b_row)| x * b_row[j]).sum())
                .collect()
        })
        .collect()
}
