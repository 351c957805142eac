//! Where an MLM training step's time goes, piece by piece, on any device: each piece of the
//! mini model (attention products and softmax, dense layers, GELU, LayerNorm, embeddings, MLM head and loss,
//! AdamW update) is timed alone at the training shape, forward and forward + backward, with the
//! device synchronised around every repetition. Profilers such as perf see only the host; on a
//! GPU, kernels run asynchronously and this is the split that says which kernels to fix.
//! `genolens-bench pieces --device cuda`.

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};

use crate::error::Result;
use crate::model::source::VarSource;
use crate::model::{Activation, HeadKind, HookedModel, ModelConfig};
use crate::ops::batched_matmul::batched_matmul;
use crate::ops::{embedding_rows, softmax_last_dim, LayerNorm, Linear};
use crate::train::adamw::{AdamW, AdamWSettings};
use crate::train::init::BertInit;
use crate::train::masking::MaskedBatch;
use crate::train::mlm::masked_lm_loss;

/// The training shape to time.
#[derive(Debug, Clone, Copy)]
pub struct PieceShape {
    /// Windows per step.
    pub batch: usize,
    /// Tokens per window.
    pub tokens: usize,
}

/// One timed piece: milliseconds per forward and per forward + backward, and how many times
/// a training step of the mini model runs it.
#[derive(Debug, Clone)]
pub struct PieceTime {
    /// What was timed.
    pub name: String,
    /// Median milliseconds of the forward pass.
    pub forward_ms: f64,
    /// Median milliseconds of forward and backward (or of the update, for AdamW), less the
    /// backward seed's time.
    pub forward_backward_ms: f64,
    /// Median milliseconds of seeding a backward pass through a sum over the output.
    pub seed_ms: f64,
    /// Occurrences in one MLM step.
    pub per_step: usize,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Median milliseconds of `run` over `repeats` runs after two warm-ups, synchronised.
fn time(device: &Device, repeats: usize, mut run: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..2 {
        run()?;
    }
    device.synchronize()?;
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        run()?;
        device.synchronize()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(times))
}

fn random(shape: &[usize], seed: u64, device: &Device) -> Result<Var> {
    let values = crate::model::weights::RandomInit::new(seed, device).normal(shape, 0.5)?;
    Ok(Var::from_tensor(&values)?)
}

/// Times `piece` (which returns the piece's output) forward and forward + backward. The backward
/// is seeded through a sum over the output; the time of that seed alone (a sum over a variable
/// of the output's shape, and candle's broadcast of its gradient back) is measured and taken off,
/// as a real step seeds its backward from the loss instead.
fn piece(
    name: &str,
    per_step: usize,
    device: &Device,
    repeats: usize,
    forward: impl Fn() -> Result<Tensor>,
) -> Result<PieceTime> {
    let forward_ms = time(device, repeats, || forward().map(|_| ()))?;
    let forward_backward_ms = time(device, repeats, || {
        forward()?.sum_all()?.backward()?;
        Ok(())
    })?;
    let output = Var::from_tensor(&forward()?.detach().zeros_like()?)?;
    let seed_ms = time(device, repeats, || {
        output.as_tensor().sum_all()?.backward()?;
        Ok(())
    })?;
    Ok(PieceTime {
        name: name.into(),
        forward_ms,
        forward_backward_ms: (forward_backward_ms - seed_ms).max(forward_ms),
        seed_ms,
        per_step,
    })
}

/// Synthetic masked batch: random k-mer ids, every seventh token masked.
fn masked_batch(shape: PieceShape, vocab: usize) -> MaskedBatch {
    let ids: Vec<Vec<u32>> = (0..shape.batch)
        .map(|row| {
            (0..shape.tokens)
                .map(|t| 5 + ((row * 7919 + t * 104_729) % (vocab - 5)) as u32)
                .collect()
        })
        .collect();
    let positions: Vec<(usize, usize)> = (0..shape.batch)
        .flat_map(|row| (1..shape.tokens - 1).step_by(7).map(move |t| (row, t)))
        .collect();
    let labels = positions.iter().map(|&(r, t)| ids[r][t]).collect();
    let mut masked = ids;
    for &(r, t) in &positions {
        masked[r][t] = 4;
    }
    MaskedBatch {
        ids: masked,
        positions,
        labels,
    }
}

/// Times every piece of the mini model (6 layers, hidden 256, 8 heads, MLP 1024, vocab 4101).
pub fn time_pieces(shape: PieceShape, device: &Device, repeats: usize) -> Result<Vec<PieceTime>> {
    let config = ModelConfig::bert(4101, 6, 256, 8, 1024, 512);
    let (b, t, d, h) = (shape.batch, shape.tokens, config.hidden_size, 8);
    let layers = config.num_hidden_layers;
    let n = b * t;
    let mut times = Vec::new();

    let q = random(&[b, h, t, d / h], 1, device)?;
    let k = random(&[b, h, t, d / h], 2, device)?;
    let v = random(&[b, h, t, d / h], 3, device)?;
    let mask = Tensor::zeros((b, 1, 1, t), DType::F32, device)?;
    let scores = random(&[b, h, t, t], 16, device)?;
    times.push(piece(
        "attention scores: q·kᵀ + mask",
        layers,
        device,
        repeats,
        || {
            let product = batched_matmul(q.as_tensor(), &k.as_tensor().t()?)?;
            Ok(product.broadcast_add(&mask)?)
        },
    )?);
    times.push(piece(
        "softmax over keys on [b, h, t, t]",
        layers,
        device,
        repeats,
        || Ok(softmax_last_dim(scores.as_tensor())?),
    )?);
    times.push(piece("pattern · v", layers, device, repeats, || {
        Ok(batched_matmul(scores.as_tensor(), v.as_tensor())?)
    })?);
    let x = random(&[n, d], 4, device)?;
    let heads = random(&[n, d], 5, device)?;
    times.push(piece(
        "split heads: [b·t, d] → [b, h, t, d/h] (q, k or v)",
        3 * layers,
        device,
        repeats,
        || {
            Ok(heads
                .reshape((b, t, h, d / h))?
                .transpose(1, 2)?
                .contiguous()?)
        },
    )?);
    for (name, inputs, outputs, per_step) in [
        ("dense 256 → 256 + bias", d, d, 4 * layers + 1),
        ("dense 256 → 1024 + bias", d, 4 * d, layers),
    ] {
        let layer = Linear {
            weight: random(&[outputs, inputs], 6, device)?.as_tensor().clone(),
            bias: random(&[outputs], 7, device)?.as_tensor().clone(),
        };
        times.push(piece(name, per_step, device, repeats, || {
            Ok(layer.forward(x.as_tensor())?)
        })?);
    }
    let wide = random(&[n, 4 * d], 8, device)?;
    let down = Linear {
        weight: random(&[d, 4 * d], 9, device)?.as_tensor().clone(),
        bias: random(&[d], 10, device)?.as_tensor().clone(),
    };
    times.push(piece(
        "dense 1024 → 256 + bias",
        layers,
        device,
        repeats,
        || Ok(down.forward(wide.as_tensor())?),
    )?);
    times.push(piece(
        "GELU (erf) on [b·t, 1024]",
        layers,
        device,
        repeats,
        || Ok(Activation::GeluErf.apply(wide.as_tensor())?),
    )?);
    let norm = LayerNorm {
        weight: random(&[d], 11, device)?.as_tensor().clone(),
        bias: random(&[d], 12, device)?.as_tensor().clone(),
        eps: 1e-12,
    };
    times.push(piece(
        "LayerNorm on [b·t, 256]",
        2 * layers + 1,
        device,
        repeats,
        || Ok(norm.forward(x.as_tensor())?),
    )?);
    let residual = random(&[n, d], 13, device)?;
    times.push(piece(
        "residual add on [b·t, 256]",
        2 * layers,
        device,
        repeats,
        || Ok((x.as_tensor() + residual.as_tensor())?),
    )?);

    let table = random(&[config.vocab_size, d], 14, device)?;
    let ids: Vec<u32> = (0..n).map(|i| 5 + (i * 104_729 % 4096) as u32).collect();
    let ids = Tensor::from_vec(ids, n, device)?;
    times.push(piece(
        "word embeddings (as trained)",
        1,
        device,
        repeats,
        || Ok(embedding_rows(table.as_tensor(), &ids)?),
    )?);
    times.push(piece(
        "word embeddings (index_select)",
        0,
        device,
        repeats,
        || Ok(table.as_tensor().index_select(&ids, 0)?),
    )?);

    let mut init = BertInit::new(1, 0, device);
    let mut vars = VarSource::new(&mut init);
    let model = HookedModel::build(&config, HeadKind::MaskedLm, &mut vars, device)?;
    let batch = masked_batch(shape, config.vocab_size);
    let hidden = random(&[n, d], 15, device)?;
    let index: Vec<u32> = batch
        .positions
        .iter()
        .map(|&(r, p)| (r * t + p) as u32)
        .collect();
    let index = Tensor::from_vec(index, batch.positions.len(), device)?;
    let labels = Tensor::from_vec(batch.labels.clone(), batch.labels.len(), device)?;
    times.push(piece(
        "MLM head + loss on the masked rows",
        1,
        device,
        repeats,
        || {
            let rows = hidden.as_tensor().index_select(&index, 0)?;
            let logits = model.mlm_logits(&rows)?.expect("MLM head");
            Ok(candle_nn::loss::cross_entropy(&logits, &labels)?)
        },
    )?);
    times.push(piece(
        "whole MLM step (no update)",
        1,
        device,
        repeats,
        || Ok(masked_lm_loss(&model, &batch, 0, device)?.0),
    )?);
    let mut optimiser = AdamW::new(vars.vars.clone(), AdamWSettings::default())?;
    let grads = masked_lm_loss(&model, &batch, 0, device)?.0.backward()?;
    let update_ms = time(device, repeats, || optimiser.step(&grads, 1e-4))?;
    times.push(PieceTime {
        name: "AdamW update (all parameters)".into(),
        forward_ms: 0.0,
        forward_backward_ms: update_ms,
        seed_ms: 0.0,
        per_step: 1,
    });
    Ok(times)
}

/// A tab-separated table of the times, with each piece's share of one step.
pub fn table(times: &[PieceTime]) -> String {
    let mut lines = vec![
        "piece\tforward ms\tforward+backward ms\tseed ms (taken off)\tper step\tms a step"
            .to_string(),
    ];
    for time in times {
        lines.push(format!(
            "{}\t{:.2}\t{:.2}\t{:.2}\t{}\t{:.1}",
            time.name,
            time.forward_ms,
            time.forward_backward_ms,
            time.seed_ms,
            time.per_step,
            time.forward_backward_ms * time.per_step as f64
        ));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_every_piece_at_a_small_shape() {
        let times = time_pieces(
            PieceShape {
                batch: 2,
                tokens: 16,
            },
            &Device::Cpu,
            1,
        )
        .unwrap();
        assert!(times.len() >= 10);
        assert!(times.iter().all(|t| t.forward_backward_ms > 0.0));
        assert!(table(&times).contains("attention scores"));
    }
}
