//! The SAE itself: encoder, decoder and one training step, for ReLU-L1 and TopK architectures.
//!
//! Shapes follow SAELens: `W_enc` [d_in, d_sae], `b_enc` [d_sae], `W_dec` [d_sae, d_in], `b_dec`
//! [d_in]; encode = act((x − b_dec) W_enc + b_enc), decode = f W_dec + b_dec.

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::Result;

/// How features are made sparse.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Architecture {
    /// ReLU with an L1 penalty on f_i × ‖W_dec,i‖ (Anthropic's April 2024 variant).
    ReluL1 {
        /// Penalty weight λ.
        l1: f64,
    },
    /// Keep the k largest pre-activations per row (Gao et al. 2024), decoder rows at unit norm.
    TopK {
        /// Active latents per row.
        k: usize,
    },
}

/// A sparse autoencoder's parameters.
pub struct Sae {
    /// Encoder [d_in, d_sae].
    pub w_enc: Var,
    /// Encoder bias [d_sae].
    pub b_enc: Var,
    /// Decoder [d_sae, d_in].
    pub w_dec: Var,
    /// Decoder bias [d_in].
    pub b_dec: Var,
    /// Sparsity.
    pub architecture: Architecture,
}

impl Sae {
    /// Seeded initialisation: decoder rows random unit vectors, encoder their transpose, biases 0.
    pub fn new(d_in: usize, d_sae: usize, architecture: Architecture, seed: u64) -> Result<Self> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut dec: Vec<f32> = (0..d_sae * d_in)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        for row in dec.chunks_mut(d_in) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|v| *v /= norm);
        }
        let device = Device::Cpu;
        let w_dec = Tensor::from_vec(dec, (d_sae, d_in), &device)?;
        let w_enc = w_dec.t()?.contiguous()?;
        Ok(Sae {
            w_enc: Var::from_tensor(&w_enc)?,
            b_enc: Var::zeros(d_sae, DType::F32, &device)?,
            w_dec: Var::from_tensor(&w_dec)?,
            b_dec: Var::zeros(d_in, DType::F32, &device)?,
            architecture,
        })
    }

    /// Feature activations [n, d_sae] of `x` [n, d_in].
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        let pre = x
            .broadcast_sub(self.b_dec.as_tensor())?
            .matmul(self.w_enc.as_tensor())?
            .broadcast_add(self.b_enc.as_tensor())?;
        let relu = pre.relu()?;
        Ok(match self.architecture {
            Architecture::ReluL1 { .. } => relu,
            Architecture::TopK { k } => {
                let d_sae = pre.dim(D::Minus1)?;
                let k = k.clamp(1, d_sae);
                let (sorted, _) = pre.detach().sort_last_dim(false)?;
                let kth = sorted.narrow(D::Minus1, k - 1, 1)?;
                let mask = pre.broadcast_ge(&kth)?.to_dtype(DType::F32)?;
                (relu * mask)?
            }
        })
    }

    /// Reconstruction [n, d_in] of features [n, d_sae].
    pub fn decode(&self, f: &Tensor) -> Result<Tensor> {
        Ok(f.matmul(self.w_dec.as_tensor())?
            .broadcast_add(self.b_dec.as_tensor())?)
    }

    /// The training loss of a batch: mean squared error summed over dimensions, plus the L1
    /// penalty for ReLU-L1 (weighted by `l1_scale`, the warm-up factor).
    pub fn loss(&self, x: &Tensor, l1_scale: f64) -> Result<Tensor> {
        let f = self.encode(x)?;
        let x_hat = self.decode(&f)?;
        let mse = (x_hat - x)?.sqr()?.sum(D::Minus1)?.mean_all()?;
        Ok(match self.architecture {
            Architecture::ReluL1 { l1 } => {
                let norms = self.w_dec.as_tensor().sqr()?.sum(D::Minus1)?.sqrt()?;
                let penalty = f.broadcast_mul(&norms)?.sum(D::Minus1)?.mean_all()?;
                (mse + (penalty * (l1 * l1_scale))?)?
            }
            Architecture::TopK { .. } => mse,
        })
    }

    /// Decoder rows back to unit norm (TopK keeps them there).
    pub fn normalise_decoder(&self) -> Result<()> {
        let w = self.w_dec.as_tensor();
        let norms = w
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .clamp(1e-12, f64::MAX)?;
        self.w_dec.set(&w.broadcast_div(&norms)?)?;
        Ok(())
    }

    /// All parameters (for the optimiser).
    pub fn vars(&self) -> Vec<Var> {
        vec![
            self.w_enc.clone(),
            self.b_enc.clone(),
            self.w_dec.clone(),
            self.b_dec.clone(),
        ]
    }
}

/// Trains `sae` on the rows of `data` [n, d_in] for `epochs`, seeded shuffles, Adam at `lr`.
/// Returns the mean loss of the last epoch.
pub fn train(
    sae: &Sae,
    data: &Tensor,
    epochs: usize,
    batch_size: usize,
    lr: f64,
    seed: u64,
) -> Result<f64> {
    use rand::seq::SliceRandom;
    let n = data.dim(0)?;
    let mut optimizer = AdamW::new(
        sae.vars(),
        ParamsAdamW {
            lr,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let total_steps = epochs * n.div_ceil(batch_size.max(1));
    let mut step = 0usize;
    let mut last = 0.0;
    for _ in 0..epochs {
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.shuffle(&mut rng);
        let (mut sum, mut batches) = (0.0, 0usize);
        for chunk in order.chunks(batch_size.max(1)) {
            let index = Tensor::from_slice(chunk, chunk.len(), data.device())?;
            let batch = data.index_select(&index, 0)?;
            // L1 warm-up over the first 5 % of steps.
            let warm = ((step + 1) as f64 / (0.05 * total_steps as f64).max(1.0)).min(1.0);
            let loss = sae.loss(&batch, warm)?;
            optimizer.backward_step(&loss)?;
            if matches!(sae.architecture, Architecture::TopK { .. }) {
                sae.normalise_decoder()?;
            }
            sum += loss.to_scalar::<f32>()? as f64;
            batches += 1;
            step += 1;
        }
        last = sum / batches.max(1) as f64;
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows made of 2–3 of 16 known unit directions in 32 dimensions, plus a little noise.
    fn synthetic(n: usize, seed: u64) -> (Tensor, Vec<Vec<f32>>) {
        use rand::Rng;
        let (d, k) = (32usize, 16usize);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let directions: Vec<Vec<f32>> = (0..k)
            .map(|_| {
                let v: Vec<f32> = (0..d).map(|_| StandardNormal.sample(&mut rng)).collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.into_iter().map(|x| x / norm).collect()
            })
            .collect();
        let mut rows = Vec::with_capacity(n * d);
        for _ in 0..n {
            let mut x = vec![0f32; d];
            let active = rng.random_range(2..=3);
            for _ in 0..active {
                let j = rng.random_range(0..k);
                let a: f32 = rng.random_range(0.5..2.0);
                for (xi, di) in x.iter_mut().zip(&directions[j]) {
                    *xi += a * di;
                }
            }
            for xi in x.iter_mut() {
                let noise: f32 = StandardNormal.sample(&mut rng);
                *xi += 0.01 * noise;
            }
            rows.extend(x);
        }
        (
            Tensor::from_vec(rows, (n, d), &Device::Cpu).unwrap(),
            directions,
        )
    }

    fn best_cosines(sae: &Sae, directions: &[Vec<f32>]) -> Vec<f32> {
        let w = sae.w_dec.as_tensor().to_vec2::<f32>().unwrap();
        directions
            .iter()
            .map(|d| {
                w.iter()
                    .map(|row| {
                        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                        row.iter().zip(d).map(|(a, b)| a * b).sum::<f32>() / norm
                    })
                    .fold(f32::MIN, f32::max)
            })
            .collect()
    }

    #[test]
    fn topk_recovers_planted_directions() {
        let (data, directions) = synthetic(4000, 1);
        let sae = Sae::new(32, 64, Architecture::TopK { k: 4 }, 2).unwrap();
        train(&sae, &data, 30, 64, 3e-3, 3).unwrap();
        let cos = best_cosines(&sae, &directions);
        assert!(cos.iter().all(|&c| c >= 0.95), "{cos:?}");
    }

    #[test]
    fn relu_l1_recovers_planted_directions() {
        let (data, directions) = synthetic(4000, 1);
        let sae = Sae::new(32, 64, Architecture::ReluL1 { l1: 0.05 }, 2).unwrap();
        train(&sae, &data, 30, 64, 3e-3, 3).unwrap();
        let cos = best_cosines(&sae, &directions);
        assert!(cos.iter().all(|&c| c >= 0.95), "{cos:?}");
    }
}
