//! The SAE itself: encoder, decoder and its training, for four architectures.
//!
//! Shapes follow SAELens: `W_enc` [d_in, d_sae], `b_enc` [d_sae], `W_dec` [d_sae, d_in], `b_dec`
//! [d_in]; encode = act((x − b_dec) W_enc + b_enc), decode = f W_dec + b_dec.
//!
//! | architecture | activation | penalty | decoder rows |
//! |---|---|---|---|
//! | `relu-l1` | ReLU | λ Σ f_i ‖W_dec,i‖ (Anthropic, April 2024; SAELens `standard`) | free |
//! | `relu-l1-unit` | ReLU | λ Σ f_i (the classic form, InterPLM / dictionary_learning) | unit norm |
//! | `topk` | the k largest pre-activations per row, ReLU'd (Gao et al. 2024) | AuxK | unit norm |
//! | `batchtopk` | the k·B largest over a batch of B rows (Bussmann et al. 2024); at inference a JumpReLU at the threshold learnt in training | AuxK | unit norm |
//!
//! The reconstruction loss is the squared error summed over dimensions, averaged over rows
//! (SAELens). The L1 weight warms up linearly over the first 5 % of steps; the learning rate
//! decays linearly to 0 over the last 20 % (SAELens's recommended schedule). AuxK (Gao et al.):
//! latents that have not fired for `dead_after` rows are dead; the top `aux_k` dead
//! pre-activations of each row, ReLU'd, reconstruct the residual x − x̂ (held fixed), weighted by
//! `aux_coef` (1/32, OpenAI's) × min(dead / aux_k, 1) (SAELens's scale).

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use crate::analysis::sae::cache::RowSource;
use crate::analysis::sae::fused::kth_largest;
use crate::error::{GenolensError, Result};

/// How features are made sparse (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(tag = "name")]
pub enum Architecture {
    /// ReLU with an L1 penalty on f_i × ‖W_dec,i‖, decoder free (`relu-l1`).
    #[serde(rename = "relu-l1")]
    ReluL1 {
        /// Penalty weight λ.
        l1: f64,
    },
    /// ReLU with a plain L1 penalty, decoder rows held at unit norm (`relu-l1-unit`).
    #[serde(rename = "relu-l1-unit")]
    ReluL1UnitNorm {
        /// Penalty weight λ.
        l1: f64,
    },
    /// The k largest pre-activations per row (`topk`).
    #[serde(rename = "topk")]
    TopK {
        /// Active latents per row.
        k: usize,
    },
    /// The k·B largest activations of a batch of B rows; a learnt threshold at inference
    /// (`batchtopk`).
    #[serde(rename = "batchtopk")]
    BatchTopK {
        /// Mean active latents per row.
        k: usize,
    },
}

impl Default for Architecture {
    /// ReLU-L1 with λ = 0.2 on rows at unit mean squared norm: the number of active latents
    /// follows the data (a TopK's k has to be guessed). On planted data (2–3 of 16 directions
    /// per row) it recovers every direction with 2× to 8× as many latents as dimensions.
    fn default() -> Self {
        Architecture::ReluL1 { l1: 0.2 }
    }
}

impl Architecture {
    /// The name used on the command line, in cfg.json's `genolens` block and in tables.
    pub fn name(&self) -> &'static str {
        match self {
            Architecture::ReluL1 { .. } => "relu-l1",
            Architecture::ReluL1UnitNorm { .. } => "relu-l1-unit",
            Architecture::TopK { .. } => "topk",
            Architecture::BatchTopK { .. } => "batchtopk",
        }
    }

    /// Parses a name with its parameter (λ for the ReLU forms, k for the TopK forms).
    pub fn from_name(name: &str, l1: f64, k: usize) -> Result<Self> {
        let arch = match name {
            "relu-l1" => Architecture::ReluL1 { l1 },
            "relu-l1-unit" => Architecture::ReluL1UnitNorm { l1 },
            "topk" => Architecture::TopK { k },
            "batchtopk" => Architecture::BatchTopK { k },
            other => {
                return Err(GenolensError::argument(
                    "--architecture",
                    format!("`{other}`: expected relu-l1, relu-l1-unit, topk or batchtopk"),
                ))
            }
        };
        match arch {
            Architecture::TopK { k: 0 } | Architecture::BatchTopK { k: 0 } => Err(
                GenolensError::argument("--k", "must be at least 1 for topk and batchtopk"),
            ),
            Architecture::ReluL1 { l1 } | Architecture::ReluL1UnitNorm { l1 }
                if !(l1.is_finite() && l1 >= 0.0) =>
            {
                Err(GenolensError::argument(
                    "--l1",
                    format!("{l1}: must be a finite number ≥ 0"),
                ))
            }
            _ => Ok(arch),
        }
    }

    /// Whether training keeps decoder rows at unit norm.
    pub fn unit_decoder(&self) -> bool {
        !matches!(self, Architecture::ReluL1 { .. })
    }

    /// Whether training adds the AuxK loss (the TopK forms).
    pub fn uses_aux(&self) -> bool {
        matches!(
            self,
            Architecture::TopK { .. } | Architecture::BatchTopK { .. }
        )
    }
}

/// A sparse autoencoder's parameters (cloning shares the tensors).
#[derive(Clone)]
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
    /// BatchTopK's inference threshold per latent ([d_sae]; SAELens's JumpReLU `threshold`),
    /// set by training; `None` before (then encoding selects over the batch).
    pub threshold: Option<Tensor>,
}

impl Sae {
    /// Seeded initialisation: decoder rows random unit vectors, encoder their transpose, biases 0.
    pub fn new(d_in: usize, d_sae: usize, architecture: Architecture, seed: u64) -> Result<Self> {
        if d_in == 0 || d_sae == 0 {
            return Err(GenolensError::argument(
                "--latents",
                format!("an SAE needs d_in and d_sae ≥ 1 (got {d_in} and {d_sae})"),
            ));
        }
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
            threshold: None,
        })
    }

    /// Input width.
    pub fn d_in(&self) -> usize {
        self.w_enc.as_tensor().dims()[0]
    }

    /// Number of latents.
    pub fn d_sae(&self) -> usize {
        self.w_enc.as_tensor().dims()[1]
    }

    /// Pre-activations (x − b_dec) W_enc + b_enc, [n, d_sae].
    pub fn pre_activations(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.broadcast_sub(self.b_dec.as_tensor())?
            .matmul(self.w_enc.as_tensor())?
            .broadcast_add(self.b_enc.as_tensor())?)
    }

    /// Feature activations [n, d_sae] of `x` [n, d_in], as at inference.
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        let pre = self.pre_activations(x)?;
        match (&self.architecture, &self.threshold) {
            (Architecture::BatchTopK { .. }, Some(threshold)) => {
                let keep = pre.broadcast_gt(threshold)?.to_dtype(DType::F32)?;
                Ok((pre.relu()? * keep)?)
            }
            _ => self.activate(&pre),
        }
    }

    /// The training-time activation of pre-activations (BatchTopK selects over the batch).
    fn activate(&self, pre: &Tensor) -> Result<Tensor> {
        let relu = pre.relu()?;
        Ok(match self.architecture {
            Architecture::ReluL1 { .. } | Architecture::ReluL1UnitNorm { .. } => relu,
            Architecture::TopK { k } => (&relu * topk_mask(pre, k, true)?)?,
            Architecture::BatchTopK { k } => (&relu * topk_mask(&relu, k, false)?)?,
        })
    }

    /// Reconstruction [n, d_in] of features [n, d_sae].
    pub fn decode(&self, f: &Tensor) -> Result<Tensor> {
        Ok(f.matmul(self.w_dec.as_tensor())?
            .broadcast_add(self.b_dec.as_tensor())?)
    }

    /// decode(encode(x)).
    pub fn reconstruct(&self, x: &Tensor) -> Result<Tensor> {
        self.decode(&self.encode(x)?)
    }

    /// Decoder rows back to unit norm.
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

    /// Folds an input scale into the weights: the SAE trained on s·x becomes one on x with the
    /// same features (W_enc·s, W_dec/s, b_dec/s; pre-activations and thresholds unchanged), as
    /// SAELens's trainer does before saving.
    pub fn fold_input_scale(&mut self, scale: f64) -> Result<()> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(GenolensError::argument(
                "normalisation factor",
                format!("{scale}: must be finite and > 0"),
            ));
        }
        self.w_enc.set(&(self.w_enc.as_tensor() * scale)?)?;
        self.w_dec.set(&(self.w_dec.as_tensor() / scale)?)?;
        self.b_dec.set(&(self.b_dec.as_tensor() / scale)?)?;
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

/// A 0/1 mask keeping the `k` largest values of each row (`per_row`) or the `k × rows` largest of
/// the whole matrix (ties at the cut are all kept; exact zeros never count as kept for the batch
/// form). Selection happens on the host: it carries no gradient.
fn topk_mask(values: &Tensor, k: usize, per_row: bool) -> Result<Tensor> {
    let (rows, cols) = values.dims2()?;
    let flat: Vec<f32> = values
        .detach()
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1()?;
    let mut mask = vec![0f32; flat.len()];
    let mut scratch = Vec::with_capacity(cols.max(1));
    if per_row {
        let k = k.clamp(1, cols);
        for (row, out) in flat.chunks(cols).zip(mask.chunks_mut(cols)) {
            scratch.clear();
            scratch.extend_from_slice(row);
            let cut = kth_largest(&mut scratch, k);
            for (m, &v) in out.iter_mut().zip(row) {
                *m = if v >= cut { 1.0 } else { 0.0 };
            }
        }
    } else {
        let keep = (k * rows).clamp(1, flat.len());
        let mut all = flat.clone();
        let cut = kth_largest(&mut all, keep);
        for (m, &v) in mask.iter_mut().zip(&flat) {
            *m = if v >= cut && v > 0.0 { 1.0 } else { 0.0 };
        }
    }
    Ok(Tensor::from_vec(mask, (rows, cols), values.device())?)
}

/// How an SAE is trained.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainSettings {
    /// Passes over the rows.
    pub epochs: usize,
    /// Rows per step.
    pub batch_size: usize,
    /// Adam's learning rate (decays linearly to 0 over the last `lr_decay` of the steps).
    pub lr: f64,
    /// Share of the final steps over which the learning rate decays (0 = constant).
    pub lr_decay: f64,
    /// Share of the first steps over which the L1 weight rises linearly from 0.
    pub l1_warmup: f64,
    /// AuxK: dead latents each row may use (default d_in / 2, as SAELens and InterPLM).
    pub aux_k: Option<usize>,
    /// AuxK weight (OpenAI's 1/32).
    pub aux_coef: f64,
    /// Rows without firing after which a latent is dead (default min(10 M, rows per epoch)).
    pub dead_after: Option<usize>,
    /// Initialise b_dec at the mean row (SAELens ≤ 5 did; it keeps fewer latents dead on
    /// anisotropic embeddings such as a DNA LM's [CLS]).
    pub init_b_dec_mean: bool,
    /// Seed of the initialisation and of the row order.
    pub seed: u64,
    /// Progress bar message; `None` shows none.
    #[serde(skip)]
    pub progress: Option<String>,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            epochs: 30,
            batch_size: 64,
            lr: 1e-3,
            lr_decay: 0.2,
            l1_warmup: 0.05,
            aux_k: None,
            aux_coef: 1.0 / 32.0,
            dead_after: None,
            init_b_dec_mean: true,
            seed: 0,
            progress: None,
        }
    }
}

/// Seed 004's settings: a ReLU SAE with 2048 latents, lr 1e-3, batch 32, 50 epochs, λ 1e-3.
pub fn seed_004_preset() -> (usize, Architecture, TrainSettings) {
    (
        2048,
        Architecture::ReluL1 { l1: 1e-3 },
        TrainSettings {
            epochs: 50,
            batch_size: 32,
            lr: 1e-3,
            ..Default::default()
        },
    )
}

/// What one epoch of training measured (over its batches, as the weights moved).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct EpochStats {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss (reconstruction + penalty + AuxK).
    pub loss: f64,
    /// Mean squared error per element (on normalised rows).
    pub mse: f64,
    /// Mean active latents per row.
    pub l0: f64,
    /// 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² over the epoch.
    pub explained_variance: f64,
    /// Share of latents that did not fire in this epoch.
    pub dead_fraction: f64,
}

/// Trains `sae` on `source`'s rows (shards in a seeded order, rows shuffled within a shard).
/// Returns one [`EpochStats`] per epoch. On the CPU each step is the fused hand-written one
/// ([`super::fused`]); elsewhere candle's autograd computes the same gradients.
pub fn train(
    sae: &mut Sae,
    source: &dyn RowSource,
    settings: &TrainSettings,
) -> Result<Vec<EpochStats>> {
    let backend = if sae.w_enc.as_tensor().device().is_cpu() {
        Backend::Fused
    } else {
        Backend::Autograd
    };
    train_with(sae, source, settings, backend)
}

/// How a training step computes its gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// Hand-written gradients on host buffers (CPU).
    Fused,
    /// candle's autograd on the model's graph (any device).
    Autograd,
}

pub(crate) fn train_with(
    sae: &mut Sae,
    source: &dyn RowSource,
    settings: &TrainSettings,
    backend: Backend,
) -> Result<Vec<EpochStats>> {
    use rand::seq::SliceRandom;
    let (rows, d_in, d_sae) = (source.rows(), source.d_in(), sae.d_sae());
    if rows == 0 {
        return Err(GenolensError::argument(
            "activations",
            "no rows to train on",
        ));
    }
    if d_in != sae.d_in() {
        return Err(GenolensError::argument(
            "activations",
            format!("rows have {d_in} dims, the SAE reads {}", sae.d_in()),
        ));
    }
    if settings.batch_size == 0 || settings.epochs == 0 {
        return Err(GenolensError::argument(
            "--batch-size/--epochs",
            "must be at least 1",
        ));
    }
    if settings.init_b_dec_mean {
        sae.b_dec.set(&source_mean(source)?)?;
    }
    let host = |v: &Var| -> Result<Vec<f32>> {
        Ok(v.as_tensor()
            .to_device(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?)
    };
    let mut fused = match backend {
        Backend::Fused => Some(super::fused::Fused::new(
            host(&sae.w_enc)?,
            host(&sae.b_enc)?,
            host(&sae.w_dec)?,
            host(&sae.b_dec)?,
        )),
        Backend::Autograd => None,
    };
    let mut optimizer = AdamW::new(
        sae.vars(),
        ParamsAdamW {
            lr: settings.lr,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(settings.seed);
    let steps_per_epoch: usize = (0..source.shards())
        .map(|s| source.shard_rows(s).div_ceil(settings.batch_size))
        .sum();
    let total_steps = settings.epochs * steps_per_epoch;
    let warmup_steps = (settings.l1_warmup * total_steps as f64).max(1.0);
    let decay_start = ((1.0 - settings.lr_decay) * total_steps as f64) as usize;
    let aux_k = settings.aux_k.unwrap_or(d_in / 2).max(1);
    let dead_after = settings.dead_after.unwrap_or(rows.min(10_000_000)) as u64;
    let mut last_fired = vec![0u64; d_sae];
    let mut rows_seen = 0u64;
    let mut threshold: Option<f64> = None;
    let bar = settings
        .progress
        .as_deref()
        .map(|m| crate::progress::bar(total_steps as u64, m));
    let mut history = Vec::with_capacity(settings.epochs);
    let mut step = 0usize;
    let l1 = match sae.architecture {
        Architecture::ReluL1 { l1 } | Architecture::ReluL1UnitNorm { l1 } => l1,
        _ => 0.0,
    };
    let mut batch_rows: Vec<f32> = Vec::with_capacity(settings.batch_size * d_in);
    for epoch in 1..=settings.epochs {
        let mut shard_order: Vec<usize> = (0..source.shards()).collect();
        shard_order.shuffle(&mut rng);
        let mut sums = EpochSums::new(d_in, d_sae);
        for shard in shard_order {
            let data = source.shard(shard)?;
            let n = data.dim(0)?;
            let host_rows: Option<Vec<f32>> = match backend {
                Backend::Fused => Some(
                    data.to_device(&Device::Cpu)?
                        .to_dtype(DType::F32)?
                        .flatten_all()?
                        .to_vec1()?,
                ),
                Backend::Autograd => None,
            };
            let mut order: Vec<u32> = (0..n as u32).collect();
            order.shuffle(&mut rng);
            for chunk in order.chunks(settings.batch_size) {
                let mut lr = settings.lr;
                if step >= decay_start && settings.lr_decay > 0.0 {
                    let left = (total_steps - step) as f64 / (total_steps - decay_start) as f64;
                    lr = settings.lr * left;
                    optimizer.set_learning_rate(lr);
                }
                let warm = ((step + 1) as f64 / warmup_steps).min(1.0);
                rows_seen += chunk.len() as u64;
                let out = match (&mut fused, &host_rows) {
                    (Some(fused), Some(all)) => {
                        batch_rows.clear();
                        for &r in chunk {
                            let r = r as usize;
                            batch_rows.extend_from_slice(&all[r * d_in..(r + 1) * d_in]);
                        }
                        let out = fused.step(
                            &batch_rows,
                            chunk.len(),
                            sae.architecture,
                            l1 * warm,
                            lr,
                            |fired| {
                                mark_fired(&mut last_fired, fired, rows_seen);
                                aux_inputs(
                                    sae.architecture,
                                    &last_fired,
                                    rows_seen,
                                    dead_after,
                                    aux_k,
                                    settings.aux_coef,
                                )
                            },
                        );
                        let norm: f64 = batch_rows.iter().map(|&v| (v as f64) * (v as f64)).sum();
                        let mut sum = vec![0f64; d_in];
                        for row in batch_rows.chunks_exact(d_in) {
                            sum.iter_mut().zip(row).for_each(|(a, &b)| *a += b as f64);
                        }
                        sums.add_host(
                            out.squared_error,
                            norm,
                            &sum,
                            out.active,
                            &out.fired,
                            out.loss,
                            chunk.len(),
                        );
                        out.min_kept
                    }
                    _ => {
                        let index = Tensor::from_slice(chunk, chunk.len(), data.device())?;
                        let x = data.index_select(&index, 0)?;
                        autograd_step(
                            sae,
                            &x,
                            &mut optimizer,
                            l1 * warm,
                            &mut last_fired,
                            rows_seen,
                            (dead_after, aux_k, settings.aux_coef),
                            &mut sums,
                        )?
                    }
                };
                if let Architecture::BatchTopK { .. } = sae.architecture {
                    // The smallest kept activation, averaged (the first batch sets it).
                    if out.is_finite() {
                        threshold = Some(match threshold {
                            None => out as f64,
                            Some(t) => 0.99 * t + 0.01 * out as f64,
                        });
                    }
                }
                step += 1;
                if let Some(bar) = &bar {
                    bar.inc(1);
                    if step % 10 == 0 || step == total_steps {
                        bar.set_message(format!(
                            "{} · epoch {epoch} · loss {:.4} · L0 {:.1} · EV {:.3}",
                            settings.progress.as_deref().unwrap_or_default(),
                            sums.loss / sums.batches.max(1) as f64,
                            sums.l0 / sums.rows.max(1) as f64,
                            sums.explained_variance()
                        ));
                    }
                }
            }
        }
        history.push(sums.stats(epoch));
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(fused) = fused {
        let device = sae.w_enc.as_tensor().device().clone();
        let (d, m) = (fused.d, fused.m);
        sae.w_enc
            .set(&Tensor::from_vec(fused.w_enc, (d, m), &device)?)?;
        sae.b_enc.set(&Tensor::from_vec(fused.b_enc, m, &device)?)?;
        sae.w_dec
            .set(&Tensor::from_vec(fused.w_dec, (m, d), &device)?)?;
        sae.b_dec.set(&Tensor::from_vec(fused.b_dec, d, &device)?)?;
    }
    if let (Architecture::BatchTopK { .. }, Some(t)) = (sae.architecture, threshold) {
        sae.threshold = Some(Tensor::full(t as f32, d_sae, &Device::Cpu)?);
    }
    Ok(history)
}

fn mark_fired(last_fired: &mut [u64], fired: &[bool], rows_seen: u64) {
    for (last, &fire) in last_fired.iter_mut().zip(fired) {
        if fire {
            *last = rows_seen;
        }
    }
}

/// AuxK's dead latents (none fired in the last `dead_after` rows), when the architecture uses it.
fn aux_inputs(
    architecture: Architecture,
    last_fired: &[u64],
    rows_seen: u64,
    dead_after: u64,
    aux_k: usize,
    coef: f64,
) -> Option<super::fused::Aux> {
    if !architecture.uses_aux() || coef <= 0.0 {
        return None;
    }
    let dead: Vec<bool> = last_fired
        .iter()
        .map(|&last| rows_seen - last > dead_after)
        .collect();
    let n_dead = dead.iter().filter(|&&d| d).count();
    if n_dead == 0 {
        return None;
    }
    Some(super::fused::Aux {
        k: aux_k.min(n_dead),
        weight: coef * (n_dead as f64 / aux_k as f64).min(1.0),
        dead,
    })
}

/// One step through candle's autograd; returns the smallest kept activation.
#[allow(clippy::too_many_arguments)]
fn autograd_step(
    sae: &Sae,
    x: &Tensor,
    optimizer: &mut AdamW,
    l1_weight: f64,
    last_fired: &mut [u64],
    rows_seen: u64,
    (dead_after, aux_k, aux_coef): (u64, usize, f64),
    sums: &mut EpochSums,
) -> Result<f32> {
    let pre = sae.pre_activations(x)?;
    let f = sae.activate(&pre)?;
    let x_hat = sae.decode(&f)?;
    let residual = (&x_hat - x)?;
    let mse = residual.sqr()?.sum(D::Minus1)?.mean_all()?;
    let mut loss = match sae.architecture {
        Architecture::ReluL1 { .. } => {
            let norms = sae.w_dec.as_tensor().sqr()?.sum(D::Minus1)?.sqrt()?;
            let penalty = f.broadcast_mul(&norms)?.sum(D::Minus1)?.mean_all()?;
            (&mse + (penalty * l1_weight)?)?
        }
        Architecture::ReluL1UnitNorm { .. } => {
            let penalty = f.sum(D::Minus1)?.mean_all()?;
            (&mse + (penalty * l1_weight)?)?
        }
        _ => mse.clone(),
    };
    let fired: Vec<bool> = f
        .gt(0.0)?
        .to_dtype(DType::F32)?
        .max(0)?
        .to_device(&Device::Cpu)?
        .to_vec1::<f32>()?
        .into_iter()
        .map(|v| v > 0.0)
        .collect();
    mark_fired(last_fired, &fired, rows_seen);
    if let Some(aux) = aux_inputs(
        sae.architecture,
        last_fired,
        rows_seen,
        dead_after,
        aux_k,
        aux_coef,
    ) {
        let mask = dead_topk_mask(&pre, &aux.dead, aux.k)?;
        let z_aux = (pre.relu()? * mask)?;
        let target = residual.detach().neg()?;
        let term = (z_aux.matmul(sae.w_dec.as_tensor())? - target)?
            .sqr()?
            .sum(D::Minus1)?
            .mean_all()?;
        loss = (loss + (term * aux.weight)?)?;
    }
    optimizer.backward_step(&loss)?;
    if sae.architecture.unit_decoder() {
        sae.normalise_decoder()?;
    }
    let kept = f.detach().flatten_all()?.to_vec1::<f32>()?;
    let min = kept
        .iter()
        .filter(|&&v| v > 0.0)
        .fold(f32::INFINITY, |a, &b| a.min(b));
    let loss_value = loss.to_scalar::<f32>()? as f64;
    sums.add(x, &x_hat, &f, &fired, loss_value)?;
    Ok(min)
}

/// The mean row of a source (shard by shard, in f64).
fn source_mean(source: &dyn RowSource) -> Result<Tensor> {
    let mut sum = vec![0f64; source.d_in()];
    for s in 0..source.shards() {
        let shard = source
            .shard(s)?
            .to_dtype(DType::F64)?
            .sum(0)?
            .to_vec1::<f64>()?;
        sum.iter_mut().zip(shard).for_each(|(a, b)| *a += b);
    }
    let n = source.rows().max(1) as f64;
    let mean: Vec<f32> = sum.into_iter().map(|v| (v / n) as f32).collect();
    Ok(Tensor::from_vec(mean, source.d_in(), &Device::Cpu)?)
}

/// Keeps, per row, the `k` largest pre-activations among the dead latents.
fn dead_topk_mask(pre: &Tensor, dead: &[bool], k: usize) -> Result<Tensor> {
    let (rows, cols) = pre.dims2()?;
    let values: Vec<f32> = pre
        .detach()
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1()?;
    let mut mask = vec![0f32; rows * cols];
    let mut scratch = Vec::with_capacity(k);
    for (row, out) in values.chunks(cols).zip(mask.chunks_mut(cols)) {
        scratch.clear();
        scratch.extend(row.iter().zip(dead).filter(|(_, &d)| d).map(|(&v, _)| v));
        let take = k.min(scratch.len()).max(1);
        let cut = kth_largest(&mut scratch, take);
        for ((m, &v), &d) in out.iter_mut().zip(row).zip(dead) {
            *m = if d && v >= cut { 1.0 } else { 0.0 };
        }
    }
    Ok(Tensor::from_vec(mask, (rows, cols), pre.device())?)
}

/// Running sums of one epoch.
struct EpochSums {
    rows: usize,
    batches: usize,
    loss: f64,
    squared_error: f64,
    squared_norm: f64,
    sum: Vec<f64>,
    l0: f64,
    fired: Vec<bool>,
    d_in: usize,
}

impl EpochSums {
    fn new(d_in: usize, d_sae: usize) -> Self {
        EpochSums {
            rows: 0,
            batches: 0,
            loss: 0.0,
            squared_error: 0.0,
            squared_norm: 0.0,
            sum: vec![0.0; d_in],
            l0: 0.0,
            fired: vec![false; d_sae],
            d_in,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn add_host(
        &mut self,
        squared_error: f64,
        squared_norm: f64,
        sum: &[f64],
        active: usize,
        fired: &[bool],
        loss: f64,
        rows: usize,
    ) {
        self.rows += rows;
        self.batches += 1;
        self.loss += loss;
        self.squared_error += squared_error;
        self.squared_norm += squared_norm;
        self.sum.iter_mut().zip(sum).for_each(|(a, b)| *a += b);
        self.l0 += active as f64;
        for (seen, &v) in self.fired.iter_mut().zip(fired) {
            *seen |= v;
        }
    }

    fn add(
        &mut self,
        x: &Tensor,
        x_hat: &Tensor,
        f: &Tensor,
        fired: &[bool],
        loss: f64,
    ) -> Result<()> {
        self.rows += x.dim(0)?;
        self.batches += 1;
        self.loss += loss;
        self.squared_error += (x_hat - x)?.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        self.squared_norm += x.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        for (s, v) in self.sum.iter_mut().zip(x.sum(0)?.to_vec1::<f32>()?) {
            *s += v as f64;
        }
        self.l0 += f
            .gt(0.0)?
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()? as f64;
        for (seen, &v) in self.fired.iter_mut().zip(fired) {
            *seen |= v;
        }
        Ok(())
    }

    fn explained_variance(&self) -> f64 {
        let n = self.rows.max(1) as f64;
        let mean_norm: f64 = self.sum.iter().map(|s| (s / n) * (s / n)).sum();
        let total = self.squared_norm - n * mean_norm;
        1.0 - self.squared_error / total.max(f64::MIN_POSITIVE)
    }

    fn stats(&self, epoch: usize) -> EpochStats {
        let n = self.rows.max(1) as f64;
        EpochStats {
            epoch,
            loss: self.loss / self.batches.max(1) as f64,
            mse: self.squared_error / (n * self.d_in as f64),
            l0: self.l0 / n,
            explained_variance: self.explained_variance(),
            dead_fraction: self.fired.iter().filter(|&&f| !f).count() as f64
                / self.fired.len().max(1) as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows made of 2–3 of 16 known unit directions in 32 dimensions, plus a little noise.
    pub(crate) fn synthetic(n: usize, seed: u64) -> (Tensor, Vec<Vec<f32>>) {
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

    /// Scaled to unit mean squared norm, as the activation cache hands rows to training.
    fn normalised(data: Tensor) -> Tensor {
        let ms = data.sqr().unwrap().sum(1).unwrap().mean_all().unwrap();
        let scale = 1.0 / (ms.to_scalar::<f32>().unwrap() as f64).sqrt();
        (data * scale).unwrap()
    }

    fn recovers(architecture: Architecture, latents: usize, settings: TrainSettings, min_cos: f32) {
        let (data, directions) = synthetic(4000, 1);
        let data = normalised(data);
        let mut sae = Sae::new(32, latents, architecture, 2).unwrap();
        let history = train(&mut sae, &data, &settings).unwrap();
        let cos = best_cosines(&sae, &directions);
        let last = history.last().unwrap();
        assert!(
            cos.iter().all(|&c| c >= min_cos),
            "{}: {cos:?} {last:?}",
            architecture.name()
        );
        assert!(last.explained_variance > 0.8, "{last:?}");
    }

    #[test]
    fn default_settings_recover_planted_directions() {
        // The criterion: max cosine ≥ 0.95 for every planted direction.
        recovers(Architecture::default(), 256, TrainSettings::default(), 0.95);
        recovers(Architecture::default(), 64, TrainSettings::default(), 0.95);
    }

    #[test]
    fn every_architecture_recovers_planted_directions() {
        let settings = TrainSettings::default();
        recovers(Architecture::TopK { k: 3 }, 64, settings.clone(), 0.95);
        recovers(
            Architecture::ReluL1UnitNorm { l1: 0.2 },
            64,
            settings.clone(),
            0.95,
        );
        // BatchTopK lets strong rows take weak rows' slots: one direction reaches 0.93.
        recovers(Architecture::BatchTopK { k: 3 }, 128, settings, 0.9);
    }

    #[test]
    fn the_fused_step_follows_candles_autograd() {
        let (data, _) = synthetic(300, 7);
        let data = normalised(data);
        for architecture in [
            Architecture::ReluL1 { l1: 0.2 },
            Architecture::ReluL1UnitNorm { l1: 0.2 },
            Architecture::TopK { k: 3 },
            Architecture::BatchTopK { k: 3 },
        ] {
            let settings = TrainSettings {
                epochs: 2,
                batch_size: 32,
                // Every latent is dead after 64 rows without firing: AuxK runs.
                dead_after: Some(64),
                ..Default::default()
            };
            let mut a = Sae::new(32, 48, architecture, 9).unwrap();
            let mut b = Sae::new(32, 48, architecture, 9).unwrap();
            let ha = train_with(&mut a, &data, &settings, Backend::Fused).unwrap();
            let hb = train_with(&mut b, &data, &settings, Backend::Autograd).unwrap();
            for (va, vb) in a.vars().iter().zip(b.vars()) {
                let diff = (va.as_tensor() - vb.as_tensor())
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(
                    diff < 2e-4,
                    "{}: parameters differ by {diff}",
                    architecture.name()
                );
            }
            let (la, lb) = (ha.last().unwrap().loss, hb.last().unwrap().loss);
            assert!(
                (la - lb).abs() < 1e-4 * lb.abs().max(1.0),
                "{}: loss {la} vs {lb}",
                architecture.name()
            );
        }
    }

    #[test]
    fn topk_masks_keep_k_per_row_or_k_per_row_on_average() {
        let v = Tensor::new(&[[3f32, 1.0, 2.0, 0.0], [5.0, 4.0, 0.0, 6.0]], &Device::Cpu).unwrap();
        let rows = topk_mask(&v, 2, true).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(
            rows,
            vec![vec![1.0, 0.0, 1.0, 0.0], vec![1.0, 0.0, 0.0, 1.0]]
        );
        let batch = topk_mask(&v, 2, false).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(
            batch,
            vec![vec![1.0, 0.0, 0.0, 0.0], vec![1.0, 1.0, 0.0, 1.0]]
        );
    }

    #[test]
    fn batchtopk_learns_a_threshold_that_keeps_about_k() {
        let (data, _) = synthetic(2000, 3);
        let mut sae = Sae::new(32, 64, Architecture::BatchTopK { k: 3 }, 2).unwrap();
        let settings = TrainSettings {
            epochs: 10,
            ..Default::default()
        };
        train(&mut sae, &data, &settings).unwrap();
        assert!(sae.threshold.is_some());
        let f = sae.encode(&data).unwrap();
        let l0 = f
            .gt(0.0)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .sum(1)
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((1.5..6.0).contains(&l0), "inference L0 {l0}");
    }

    #[test]
    fn folding_the_input_scale_keeps_the_features() {
        let (data, _) = synthetic(50, 4);
        let mut sae = Sae::new(32, 48, Architecture::TopK { k: 4 }, 5).unwrap();
        sae.b_dec
            .set(&Tensor::full(0.1f32, 32, &Device::Cpu).unwrap())
            .unwrap();
        let scaled = (&data * 0.25).unwrap();
        let before = sae.encode(&scaled).unwrap();
        let recon_before = (sae.reconstruct(&scaled).unwrap() / 0.25).unwrap();
        sae.fold_input_scale(0.25).unwrap();
        let after = sae.encode(&data).unwrap();
        let recon_after = sae.reconstruct(&data).unwrap();
        let diff = (before - after).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
        let diff = (recon_before - recon_after)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-4);
    }

    #[test]
    fn bad_names_and_parameters_are_refused() {
        assert!(Architecture::from_name("gated", 0.1, 4)
            .unwrap_err()
            .to_string()
            .contains("gated"));
        assert!(Architecture::from_name("topk", 0.1, 0).is_err());
        assert!(Architecture::from_name("relu-l1", f64::NAN, 4).is_err());
        assert_eq!(
            Architecture::from_name("batchtopk", 0.0, 8).unwrap(),
            Architecture::BatchTopK { k: 8 }
        );
    }
}
