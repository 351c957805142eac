//! Linear probes by layer: where does the label become linearly decodable? (the honest test of
//! seed 004's "final-layer bottleneck"). For the embeddings (`blocks.0.hook_resid_pre`, layer 0)
//! and every block's output (`blocks.L.hook_resid_post`, layer L + 1), at [CLS] and as the masked
//! mean over k-mer tokens: an L2-penalised logistic regression (linfa) fitted on the training
//! sequences (features z-scored with the training mean and sd) and scored on held-out ones:
//! AUROC with a percentile bootstrap 95 % CI.

use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2, Axis};

use crate::analysis::{collect_forward, pool_activation, BatchOptions, Pooling};
use crate::data::Example;
use crate::error::{GenolensError, Result};
use crate::model::{BlockSite, HookPoint, Hooks, LoadedModel};
use crate::stats::auroc_with_ci;

crate::table_row! {
    /// One probe: a layer and a pooling, fitted on train, scored on held-out sequences.
    pub struct ProbeRow {
        /// 0 = embeddings, L = output of block L − 1.
        pub layer: u32,
        /// The hook read.
        pub hook: String,
        /// `cls` or `mean`.
        pub pooling: String,
        /// Training sequences.
        pub train_sequences: u32,
        /// Held-out sequences.
        pub test_sequences: u32,
        /// Held-out AUROC.
        pub auroc: f64,
        /// Lower end of its 95 % bootstrap CI.
        pub auroc_low: f64,
        /// Upper end.
        pub auroc_high: f64,
        /// Held-out accuracy at p = 0.5.
        pub accuracy: f64,
        /// Training AUROC (how far the probe overfits).
        pub train_auroc: f64,
    }
}

/// Settings of the probes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeSettings {
    /// L2 penalty of the logistic regression.
    pub alpha: f64,
    /// Bootstrap resamples of the AUROC CI.
    pub resamples: usize,
    /// Poolings probed.
    pub poolings: Vec<Pooling>,
    /// Seed of the bootstrap.
    pub seed: u64,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            alpha: 1.0,
            resamples: 1000,
            poolings: vec![Pooling::Cls, Pooling::Mean],
            seed: 0,
        }
    }
}

/// The hooks probed: embeddings, then every block's output.
pub fn probe_points(layers: usize) -> Vec<HookPoint> {
    let mut points = vec![HookPoint::block(0, BlockSite::ResidPre)];
    points.extend((0..layers).map(|l| HookPoint::block(l, BlockSite::ResidPost)));
    points
}

/// Pooled vectors of every probed hook: [point][pooling] → rows.
fn pooled_features(
    loaded: &LoadedModel,
    examples: &[Example],
    points: &[HookPoint],
    poolings: &[Pooling],
    options: &BatchOptions,
) -> Result<Vec<Vec<Vec<Vec<f32>>>>> {
    let mut hooks = Hooks::none();
    for &p in points {
        hooks = hooks.capture_point(p);
    }
    let per_sequence = collect_forward(loaded, examples, &hooks, options, |prepared, output| {
        let mut rows: Vec<Vec<Vec<Vec<f32>>>> = vec![Vec::new(); prepared.len()];
        for &point in points {
            let activation = output.cache.get_point(point).expect("captured");
            for &pooling in poolings {
                let pooled = pool_activation(point, activation, &prepared.batch, pooling)?
                    .to_device(&candle_core::Device::Cpu)?
                    .to_dtype(candle_core::DType::F32)?
                    .to_vec2::<f32>()?;
                for (r, v) in pooled.into_iter().enumerate() {
                    rows[r].push(vec![v]);
                }
            }
        }
        Ok(rows)
    })?;
    // per_sequence[s][point × pooling][0] → out[point][pooling][s]
    let mut out = vec![vec![Vec::with_capacity(examples.len()); poolings.len()]; points.len()];
    for sequence in per_sequence {
        for (i, mut v) in sequence.into_iter().enumerate() {
            out[i / poolings.len()][i % poolings.len()].push(v.remove(0));
        }
    }
    Ok(out)
}

fn binary_labels(examples: &[Example], what: &str) -> Result<Vec<bool>> {
    examples
        .iter()
        .map(|e| match e.label.as_deref() {
            Some("0") => Ok(false),
            Some("1") => Ok(true),
            other => Err(GenolensError::argument(
                "probe",
                format!(
                    "{what} sequence {} has label {other:?}: probes need labels 0 and 1",
                    e.id
                ),
            )),
        })
        .collect()
}

fn matrix(rows: &[Vec<f32>]) -> Array2<f64> {
    let (n, d) = (rows.len(), rows.first().map_or(0, |r| r.len()));
    Array2::from_shape_fn((n, d), |(i, j)| rows[i][j] as f64)
}

/// Fits and scores one probe; returns (test scores, train scores).
pub fn fit_probe(
    train: &[Vec<f32>],
    train_labels: &[bool],
    test: &[Vec<f32>],
    alpha: f64,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let x = matrix(train);
    let mean = x.mean_axis(Axis(0)).expect("rows");
    let sd = x
        .std_axis(Axis(0), 0.0)
        .mapv(|s| if s > 1e-12 { s } else { 1.0 });
    let targets: Array1<usize> = train_labels.iter().map(|&l| l as usize).collect();
    let dataset = Dataset::new((&x - &mean) / &sd, targets);
    let model = LogisticRegression::default()
        .alpha(alpha)
        .max_iterations(200)
        .fit(&dataset)
        .map_err(|e| {
            GenolensError::argument("probe", format!("logistic regression did not fit: {e}"))
        })?;
    let positive = model.labels().pos.class == 1;
    let score = |x: &Array2<f64>| -> Vec<f64> {
        let p = model.predict_probabilities(&((x - &mean) / &sd));
        p.iter()
            .map(|&p| if positive { p } else { 1.0 - p })
            .collect()
    };
    Ok((score(&matrix(test)), score(&x)))
}

/// Probes every layer × pooling: fitted on `train`, scored on `test` (labels "0"/"1").
pub fn probe_layers(
    loaded: &LoadedModel,
    train: &[Example],
    test: &[Example],
    settings: &ProbeSettings,
    batch_size: usize,
) -> Result<Vec<ProbeRow>> {
    let train_labels = binary_labels(train, "training")?;
    let test_labels = binary_labels(test, "held-out")?;
    for (labels, what) in [(&train_labels, "training"), (&test_labels, "held-out")] {
        if !(labels.iter().any(|&l| l) && labels.iter().any(|&l| !l)) {
            return Err(GenolensError::argument(
                "probe",
                format!("the {what} sequences need both classes (0 and 1)"),
            ));
        }
    }
    let layers = loaded.model.config().num_hidden_layers;
    let points = probe_points(layers);
    let options = BatchOptions::with_progress(batch_size, "probe features (train)");
    let train_features = pooled_features(loaded, train, &points, &settings.poolings, &options)?;
    let options = BatchOptions::with_progress(batch_size, "probe features (held-out)");
    let test_features = pooled_features(loaded, test, &points, &settings.poolings, &options)?;
    let mut rows = Vec::new();
    for (layer, point) in points.iter().enumerate() {
        for (p, pooling) in settings.poolings.iter().enumerate() {
            let (scores, train_scores) = fit_probe(
                &train_features[layer][p],
                &train_labels,
                &test_features[layer][p],
                settings.alpha,
            )?;
            let estimate = auroc_with_ci(
                &scores,
                &test_labels,
                settings.resamples,
                0.95,
                settings.seed,
            )
            .ok_or_else(|| GenolensError::argument("probe", "AUROC undefined (one class)"))?;
            let correct = scores
                .iter()
                .zip(&test_labels)
                .filter(|(s, &l)| (**s >= 0.5) == l)
                .count();
            rows.push(ProbeRow {
                layer: layer as u32,
                hook: point.to_string(),
                pooling: match pooling {
                    Pooling::Cls => "cls".into(),
                    Pooling::Mean => "mean".into(),
                },
                train_sequences: train.len() as u32,
                test_sequences: test.len() as u32,
                auroc: estimate.value,
                auroc_low: estimate.low,
                auroc_high: estimate.high,
                accuracy: correct as f64 / test.len() as f64,
                train_auroc: crate::stats::auroc(&train_scores, &train_labels).unwrap_or(f64::NAN),
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_separable_direction_is_decoded_and_noise_is_not() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut make = |n: usize, signal: f32| -> (Vec<Vec<f32>>, Vec<bool>) {
            (0..n)
                .map(|i| {
                    let label = i % 2 == 0;
                    let mut row: Vec<f32> = (0..8).map(|_| rng.random_range(-1.0..1.0)).collect();
                    row[3] += if label { signal } else { -signal };
                    (row, label)
                })
                .unzip()
        };
        let (train, train_labels) = make(200, 1.0);
        let (test, test_labels) = make(200, 1.0);
        let (scores, _) = fit_probe(&train, &train_labels, &test, 1.0).unwrap();
        assert!(crate::stats::auroc(&scores, &test_labels).unwrap() > 0.9);
        let (train, train_labels) = make(200, 0.0);
        let (test, test_labels) = make(200, 0.0);
        let (scores, _) = fit_probe(&train, &train_labels, &test, 1.0).unwrap();
        let auroc = crate::stats::auroc(&scores, &test_labels).unwrap();
        assert!((0.35..0.65).contains(&auroc), "{auroc}");
    }
}
