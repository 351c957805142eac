//! Masked-language-model pretraining of a k-mer BERT on genome sequence (DNABERT's recipe:
//! span masking, AdamW with weight decay 0.01, linear warm-up then decay), seeded and resumable.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{GenolensError, Result};
use crate::model::checkpoint::{normalise, read_tensors};
use crate::model::source::VarSource;
use crate::model::weights::WeightTaker;
use crate::model::{Batch, HeadKind, HookedModel, ModelConfig};
use crate::tokenize::kmer::KmerTokenizer;
use crate::tokenize::vocab::KmerVocab;
use crate::train::adamw::{AdamW, AdamWSettings};
use crate::train::checkpoint::{
    read_training_state, save_model, save_training_state, TrainerState,
};
use crate::train::corpus::Corpus;
use crate::train::init::BertInit;
use crate::train::kmer_init::InitScheme;
use crate::train::masking::{mask_spans, MaskedBatch};
use crate::train::schedule::linear_warmup_decay;
use crate::train::timing::{Phase, StepTimer};

/// Everything an MLM run depends on.
#[derive(Debug, Clone)]
pub struct MlmSettings {
    /// Training FASTA (e.g. data/cache/pretrain-corpus.fa.gz).
    pub corpus: PathBuf,
    /// Held-out FASTA for validation (e.g. data/cache/pretrain-heldout.fa.gz).
    pub heldout: PathBuf,
    /// Output folder: the final model, `checkpoint/`, `log.tsv`.
    pub out: PathBuf,
    /// Architecture (vocab_size must be 4^k + 5).
    pub config: ModelConfig,
    /// Window length in bases (tokens = window − k + 1 + 2).
    pub window: usize,
    /// Windows per step.
    pub batch_size: usize,
    /// Optimiser steps.
    pub steps: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Fraction of steps spent warming up.
    pub warmup_fraction: f64,
    /// AdamW settings (weight decay 0.01).
    pub adamw: AdamWSettings,
    /// Fraction of k-mer tokens masked.
    pub mask_rate: f64,
    /// Seed of the init, the batches and the masks.
    pub seed: u64,
    /// How the embeddings of a fresh run start.
    pub init: InitScheme,
    /// Continue pretraining from this finished MLM's weights (its config.json must be `config`),
    /// with a fresh optimiser and schedule; `None` = a fresh init.
    pub from: Option<PathBuf>,
    /// Validate every this many steps.
    pub eval_every: usize,
    /// Held-out windows in the validation set.
    pub eval_windows: usize,
    /// Save a resumable checkpoint every this many steps.
    pub checkpoint_every: usize,
    /// Stop after this many steps of this invocation (a resume continues); `None` = run to the end.
    pub stop_after: Option<usize>,
}

/// Loss and accuracy on masked tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MlmEvaluation {
    /// Mean cross-entropy (nats) over masked tokens.
    pub loss: f64,
    /// Fraction of masked tokens whose argmax is the true k-mer.
    pub accuracy: f64,
    /// Masked tokens scored.
    pub tokens: usize,
}

/// What a finished (or stopped) run reports.
#[derive(Debug, Clone)]
pub struct MlmReport {
    /// Steps done in total.
    pub step: usize,
    /// Held-out evaluation of the final weights.
    pub heldout: MlmEvaluation,
    /// Training seconds, over every resumed part.
    pub wall_seconds: f64,
    /// Mean training loss over the last (up to) 50 steps.
    pub recent_train_loss: f64,
}

/// The k of a DNABERT vocabulary size (4^k + 5).
pub fn k_of(config: &ModelConfig) -> Result<usize> {
    config.dnabert_k().ok_or_else(|| GenolensError::Config {
        path: "<train>".into(),
        message: format!(
            "vocab_size {} is not 4^k + 5 for a k-mer vocabulary",
            config.vocab_size
        ),
    })
}

/// Token ids of equal-length windows (all A/C/G/T) with [CLS] and [SEP].
pub fn window_ids(
    tokenizer: &KmerTokenizer,
    windows: &[Vec<u8>],
) -> Result<(Vec<Vec<u32>>, Vec<usize>)> {
    let mut ids = Vec::with_capacity(windows.len());
    let mut lengths = Vec::with_capacity(windows.len());
    for (i, window) in windows.iter().enumerate() {
        let text = std::str::from_utf8(window).expect("corpus windows are ASCII");
        let tokenized = tokenizer.tokenize(&format!("window{i}"), text)?;
        lengths.push(tokenized.ids.len());
        ids.push(tokenized.ids);
    }
    Ok((ids, lengths))
}

/// Cross-entropy of the MLM head at the masked positions only (the vocabulary projection is the
/// costliest layer of a small model; masked rows are ~15 % of all).
pub fn masked_lm_loss(
    model: &HookedModel,
    masked: &MaskedBatch,
    pad_id: u32,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let batch = Batch::from_ids(&masked.ids, pad_id, device)?;
    let hidden = model.encode(&batch)?;
    let (rows, tokens, width) = hidden.dims3()?;
    let flat = hidden.reshape((rows * tokens, width))?;
    let index: Vec<u32> = masked
        .positions
        .iter()
        .map(|&(r, p)| (r * tokens + p) as u32)
        .collect();
    let index = Tensor::from_vec(index, masked.positions.len(), device)?;
    let logits = model
        .mlm_logits(&flat.index_select(&index, 0)?)?
        .ok_or_else(|| GenolensError::Config {
            path: "<train>".into(),
            message: "the model has no MLM head".into(),
        })?;
    let labels = Tensor::from_vec(masked.labels.clone(), masked.labels.len(), device)?;
    let loss = candle_nn::loss::cross_entropy(&logits, &labels)?;
    Ok((loss, logits))
}

/// A fixed validation set: windows and masks drawn from `seed` only.
pub struct MlmValidation {
    masked: Vec<MaskedBatch>,
}

impl MlmValidation {
    /// Draws `windows` held-out windows in batches of `batch_size` and masks them.
    pub fn new(
        corpus: &Corpus,
        tokenizer: &KmerTokenizer,
        windows: usize,
        batch_size: usize,
        mask_rate: f64,
        seed: u64,
    ) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_e7a1);
        let vocab = &tokenizer.vocab;
        let kmer_ids = vocab.kmer_ids();
        let mut masked = Vec::new();
        let mut left = windows;
        while left > 0 {
            let size = left.min(batch_size);
            let sampled: Vec<Vec<u8>> = (0..size).map(|_| corpus.sample(&mut rng)).collect();
            let (ids, lengths) = window_ids(tokenizer, &sampled)?;
            masked.push(mask_spans(
                &ids,
                &lengths,
                vocab.k,
                mask_rate,
                &vocab.special,
                &kmer_ids,
                &mut rng,
            ));
            left -= size;
        }
        Ok(MlmValidation { masked })
    }

    /// The masked batches.
    pub fn batches(&self) -> &[MaskedBatch] {
        &self.masked
    }

    /// Loss and accuracy of `model` on the set.
    pub fn evaluate(
        &self,
        model: &HookedModel,
        pad_id: u32,
        device: &Device,
    ) -> Result<MlmEvaluation> {
        let (mut loss_sum, mut correct, mut tokens) = (0.0f64, 0usize, 0usize);
        for masked in &self.masked {
            let (loss, logits) = masked_lm_loss(model, masked, pad_id, device)?;
            let n = masked.labels.len();
            loss_sum += loss.to_scalar::<f32>()? as f64 * n as f64;
            let predicted: Vec<u32> = logits.argmax(1)?.to_vec1()?;
            correct += predicted
                .iter()
                .zip(&masked.labels)
                .filter(|(p, l)| p == l)
                .count();
            tokens += n;
        }
        Ok(MlmEvaluation {
            loss: loss_sum / tokens.max(1) as f64,
            accuracy: correct as f64 / tokens.max(1) as f64,
            tokens,
        })
    }
}

/// The model to train, fresh or restored from a checkpoint with its optimiser state.
struct Restored {
    model: HookedModel,
    vars: Vec<(String, candle_core::Var)>,
    resume: Option<(TrainerState, std::collections::HashMap<String, Tensor>)>,
}

fn build_model(
    settings: &MlmSettings,
    vocab: &KmerVocab,
    checkpoint: &Path,
    device: &Device,
) -> Result<Restored> {
    if let Some((state, moments)) = read_training_state(checkpoint)? {
        let (model, vars) =
            model_from_weights(settings, &checkpoint.join("model.safetensors"), device)?;
        return Ok(Restored {
            model,
            vars,
            resume: Some((state, moments)),
        });
    }
    if let Some(from) = &settings.from {
        check_same_architecture(from, &settings.config)?;
        let (model, vars) = model_from_weights(settings, &from.join("model.safetensors"), device)?;
        return Ok(Restored {
            model,
            vars,
            resume: None,
        });
    }
    let mut init = BertInit::new(settings.seed, vocab.special.pad, device);
    if settings.init == InitScheme::Kmer {
        init = init.with_kmer_embeddings(vocab);
    }
    let mut vars = VarSource::new(&mut init);
    let model = HookedModel::build(&settings.config, HeadKind::MaskedLm, &mut vars, device)?;
    Ok(Restored {
        model,
        vars: vars.vars,
        resume: None,
    })
}

/// Errors unless the model folder `from` has the architecture `config` describes (a continued
/// run keeps the shape it starts from).
fn check_same_architecture(from: &Path, config: &ModelConfig) -> Result<()> {
    let path = from.join("config.json");
    let theirs = ModelConfig::from_file(&path)?;
    let fields = [
        ("vocab_size", theirs.vocab_size, config.vocab_size),
        (
            "num_hidden_layers",
            theirs.num_hidden_layers,
            config.num_hidden_layers,
        ),
        ("hidden_size", theirs.hidden_size, config.hidden_size),
        (
            "num_attention_heads",
            theirs.num_attention_heads,
            config.num_attention_heads,
        ),
        (
            "intermediate_size",
            theirs.intermediate_size,
            config.intermediate_size,
        ),
        (
            "max_position_embeddings",
            theirs.max_position_embeddings,
            config.max_position_embeddings,
        ),
    ];
    let differences: Vec<String> = fields
        .iter()
        .filter(|(_, theirs, ours)| theirs != ours)
        .map(|(key, theirs, ours)| format!("{key} is {theirs} there but {ours} here"))
        .collect();
    if differences.is_empty() {
        return Ok(());
    }
    Err(GenolensError::Config {
        path,
        message: format!(
            "cannot continue pretraining from this model with another shape: {} (pass the shape options that match it)",
            differences.join(", ")
        ),
    })
}

/// A trainable MLM holding the weights of `weights` (every tensor of `settings.config` must be
/// there, with its shape; none may be left over).
fn model_from_weights(
    settings: &MlmSettings,
    weights: &Path,
    device: &Device,
) -> Result<(HookedModel, Vec<(String, candle_core::Var)>)> {
    let normalised = normalise(
        read_tensors(weights)?,
        Some(HeadKind::MaskedLm),
        &settings.config,
    )?;
    let mut taker = WeightTaker::new(weights, normalised.tensors, device);
    let mut vars = VarSource::new(&mut taker);
    let model = HookedModel::build(&settings.config, HeadKind::MaskedLm, &mut vars, device)?;
    let vars = vars.vars;
    taker.finish()?;
    Ok((model, vars))
}

/// Trains (or resumes from `out/checkpoint/`) and writes the final model into `out/`.
pub fn train_mlm(settings: &MlmSettings, device: &Device) -> Result<MlmReport> {
    train_mlm_on(&MlmInputs::load(settings)?, settings, device)
}

/// What a run reads before it trains: the vocabulary, the training corpus and the fixed held-out
/// validation set (also what the model card's k-mer baseline is scored on).
pub struct MlmInputs {
    /// The k-mer vocabulary.
    pub vocab: KmerVocab,
    /// Its tokenizer.
    pub tokenizer: KmerTokenizer,
    /// Training windows come from here.
    pub corpus: Corpus,
    /// Held-out masked batches.
    pub validation: MlmValidation,
}

impl MlmInputs {
    /// Reads the corpora and draws the validation set.
    pub fn load(settings: &MlmSettings) -> Result<Self> {
        let vocab = KmerVocab::dnabert(k_of(&settings.config)?);
        let tokenizer = KmerTokenizer::new(vocab.clone(), settings.config.max_position_embeddings);
        let corpus = Corpus::read(&settings.corpus, settings.window)?;
        let heldout = Corpus::read(&settings.heldout, settings.window)?;
        let validation = MlmValidation::new(
            &heldout,
            &tokenizer,
            settings.eval_windows,
            settings.batch_size,
            settings.mask_rate,
            settings.seed,
        )?;
        Ok(MlmInputs {
            vocab,
            tokenizer,
            corpus,
            validation,
        })
    }
}

/// [`train_mlm`] on inputs already loaded.
pub fn train_mlm_on(
    inputs: &MlmInputs,
    settings: &MlmSettings,
    device: &Device,
) -> Result<MlmReport> {
    let MlmInputs {
        vocab,
        tokenizer,
        corpus,
        validation,
    } = inputs;
    let k = vocab.k;
    let kmer_ids = vocab.kmer_ids();
    let pad = vocab.special.pad;
    let checkpoint_dir = settings.out.join("checkpoint");
    let Restored {
        model,
        vars,
        resume,
    } = build_model(settings, vocab, &checkpoint_dir, device)?;
    let mut optimiser = AdamW::new(vars, settings.adamw)?;
    let (start, mut wall) = match &resume {
        Some((state, moments)) => {
            optimiser.load_state(moments, state.step)?;
            tracing::info!("resuming from step {} of {}", state.step, state.total_steps);
            (state.step, state.wall_seconds)
        }
        None => (0, 0.0),
    };
    std::fs::create_dir_all(&settings.out).map_err(|e| GenolensError::io(&settings.out, e))?;
    let log_path = settings.out.join("log.tsv");
    let mut log = open_log(&log_path, start)?;
    let end = settings
        .stop_after
        .map_or(settings.steps, |n| (start + n).min(settings.steps));
    let warmup = ((settings.steps as f64) * settings.warmup_fraction).round() as usize;
    let progress = crate::progress::bar((end - start) as u64, "MLM pretraining");
    let mut recent: Vec<f64> = Vec::new();
    let mut last_eval = None;
    let mut clock = Instant::now();
    let mut timer = StepTimer::default();
    for step in start..end {
        timer.start_step();
        let (windows, mut rng) = corpus.batch(settings.seed, step, settings.batch_size);
        let (ids, lengths) = window_ids(tokenizer, &windows)?;
        let masked = mask_spans(
            &ids,
            &lengths,
            k,
            settings.mask_rate,
            &vocab.special,
            &kmer_ids,
            &mut rng,
        );
        timer.end(Phase::Batch, device)?;
        let (loss, _) = masked_lm_loss(&model, &masked, pad, device)?;
        timer.end(Phase::Forward, device)?;
        let grads = loss.backward()?;
        timer.end(Phase::Backward, device)?;
        let lr = linear_warmup_decay(step, settings.steps, warmup, settings.learning_rate);
        optimiser.step(&grads, lr)?;
        let loss = loss.to_scalar::<f32>()? as f64;
        timer.end(Phase::Update, device)?;
        recent.push(loss);
        if recent.len() > 50 {
            recent.remove(0);
        }
        let done = step + 1;
        let mut line = format!("{done}\t{loss:.5}\t{lr:.3e}");
        if done % settings.eval_every == 0 || done == settings.steps {
            let evaluation = validation.evaluate(&model, pad, device)?;
            line.push_str(&format!(
                "\t{:.5}\t{:.5}",
                evaluation.loss, evaluation.accuracy
            ));
            crate::progress::report_line(
                &progress,
                format!(
                    "step {done}: train loss {:.4}, held-out loss {:.4}, accuracy {:.4} ({})",
                    recent.iter().sum::<f64>() / recent.len() as f64,
                    evaluation.loss,
                    evaluation.accuracy,
                    timer.summary(),
                ),
            );
            last_eval = Some(evaluation);
        } else {
            line.push_str("\t\t");
        }
        writeln!(log, "{line}").map_err(|e| GenolensError::io(&log_path, e))?;
        progress.set_message(format!("loss {loss:.3} lr {lr:.2e}"));
        progress.inc(1);
        if done % settings.checkpoint_every == 0 || done == end {
            wall += clock.elapsed().as_secs_f64();
            clock = Instant::now();
            save_model(&checkpoint_dir, &model, vocab, None)?;
            let state = TrainerState {
                step: done,
                total_steps: settings.steps,
                seed: settings.seed,
                wall_seconds: wall,
            };
            save_training_state(&checkpoint_dir, &optimiser, &state)?;
        }
    }
    progress.finish_and_clear();
    wall += clock.elapsed().as_secs_f64();
    let heldout_eval = match last_eval {
        Some(e) => e,
        None => validation.evaluate(&model, pad, device)?,
    };
    if end == settings.steps {
        save_model(&settings.out, &model, vocab, None)?;
    }
    drop(log);
    Ok(MlmReport {
        step: end,
        heldout: heldout_eval,
        wall_seconds: wall,
        // From the log, not `recent`: a rerun of a finished run (to rewrite its card) trains no
        // step but must still report the run's last losses.
        recent_train_loss: mean_of_last_logged_losses(&log_path, 50)?,
    })
}

/// Mean training loss of the last `n` rows of a run's log.tsv (0 when it has none).
fn mean_of_last_logged_losses(path: &Path, n: usize) -> Result<f64> {
    let text = std::fs::read_to_string(path).map_err(|e| GenolensError::io(path, e))?;
    let losses: Vec<f64> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').nth(1).and_then(|v| v.parse().ok()))
        .collect();
    let last = &losses[losses.len().saturating_sub(n)..];
    Ok(last.iter().sum::<f64>() / last.len().max(1) as f64)
}

/// Opens the TSV log for appending, dropping rows at or after `start` (a resume rewrites them).
fn open_log(path: &Path, start: usize) -> Result<std::fs::File> {
    let header = "step\ttrain_loss\tlearning_rate\theldout_loss\theldout_accuracy";
    let kept: Vec<String> = match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .skip(1)
            .filter(|l| {
                l.split('\t')
                    .next()
                    .and_then(|s| s.parse::<usize>().ok())
                    .is_some_and(|s| s <= start)
            })
            .map(str::to_string)
            .collect(),
        Err(_) => Vec::new(),
    };
    let mut file = std::fs::File::create(path).map_err(|e| GenolensError::io(path, e))?;
    writeln!(file, "{header}").map_err(|e| GenolensError::io(path, e))?;
    for line in kept {
        writeln!(file, "{line}").map_err(|e| GenolensError::io(path, e))?;
    }
    Ok(file)
}
