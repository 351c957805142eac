//! Sequence-classification fine-tuning of a pretrained k-mer BERT on a genolens dataset table
//! (columns sequence, label, split), and its held-out evaluation.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor, D};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::analysis::tokenize_batch;
use crate::datasets::rows::{read_sequence_rows, SequenceRow};
use crate::error::{GenolensError, Result};
use crate::model::checkpoint::{normalise, read_tensors};
use crate::model::load::sha256_file;
use crate::model::source::VarSource;
use crate::model::weights::WeightTaker;
use crate::model::{GenolensRecord, HeadKind, HookedModel, Hooks, ModelConfig, TrainingData};
use crate::stats::{auroc_with_ci, AurocEstimate};
use crate::tokenize::kmer::KmerTokenizer;
use crate::tokenize::vocab::KmerVocab;
use crate::tokenize::Tokenizer;
use crate::train::adamw::{AdamW, AdamWSettings};
use crate::train::checkpoint::save_model;
use crate::train::dropout::dropout_hooks;
use crate::train::init::EncoderWithNewHead;
use crate::train::schedule::linear_warmup_decay;

/// Everything a fine-tuning run depends on.
#[derive(Debug, Clone)]
pub struct ClassifySettings {
    /// Dataset table (genolens sequence table with `split`).
    pub data: PathBuf,
    /// Pretrained MLM model folder.
    pub init: PathBuf,
    /// Output folder.
    pub out: PathBuf,
    /// Passes over the training split.
    pub epochs: usize,
    /// Sequences per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Fraction of steps spent warming up.
    pub warmup_fraction: f64,
    /// AdamW settings.
    pub adamw: AdamWSettings,
    /// Seed of the head init, the shuffling and the dropout masks.
    pub seed: u64,
    /// Dropout probability at HF BERT's sites while training (0 = none); see [`dropout_hooks`].
    pub dropout: f64,
}

/// Held-out metrics of a classifier.
#[derive(Debug, Clone)]
pub struct ClassifierEvaluation {
    /// AUROC of P(label 1) with its 95 % bootstrap interval.
    pub auroc: AurocEstimate,
    /// Accuracy per class (label, name, correct, total) at argmax.
    pub per_class: Vec<(i64, String, usize, usize)>,
    /// Overall accuracy.
    pub accuracy: f64,
    /// P(label 1) for each row, in the order evaluated.
    pub scores: Vec<f64>,
}

/// What a fine-tuning run reports.
#[derive(Debug, Clone)]
pub struct ClassifyReport {
    /// Validation evaluation after each epoch.
    pub valid: Vec<ClassifierEvaluation>,
    /// Test evaluation of the final model.
    pub test: ClassifierEvaluation,
    /// Names initialised rather than read from the pretrained model.
    pub initialised: Vec<String>,
    /// Training seconds.
    pub wall_seconds: f64,
    /// Optimiser steps.
    pub steps: usize,
}

/// Class names by label (from `label_name`), 0..n.
fn class_names(rows: &[SequenceRow]) -> Vec<String> {
    let labels = rows.iter().map(|r| r.label).max().unwrap_or(0) as usize + 1;
    (0..labels)
        .map(|l| {
            rows.iter()
                .find(|r| r.label == l as i64)
                .map(|r| r.label_name.clone())
                .unwrap_or_else(|| l.to_string())
        })
        .collect()
}

/// Logits [b, labels] of a batch of sequences.
pub fn classifier_logits(
    model: &HookedModel,
    tokenizer: &Tokenizer,
    rows: &[&SequenceRow],
    device: &Device,
) -> Result<Tensor> {
    logits_with_hooks(model, tokenizer, rows, &Hooks::none(), device)
}

/// Logits through the hooked forward pass: the same pass serves evaluation (no hooks) and
/// training (dropout hooks), so the two cannot drift apart.
fn logits_with_hooks(
    model: &HookedModel,
    tokenizer: &Tokenizer,
    rows: &[&SequenceRow],
    hooks: &Hooks,
    device: &Device,
) -> Result<Tensor> {
    let (batch, _) = tokenize_batch(
        tokenizer,
        rows.iter().map(|r| (r.id.as_str(), r.sequence.as_str())),
        device,
    )?;
    model
        .forward(&batch, hooks)?
        .logits
        .ok_or_else(|| GenolensError::Config {
            path: "<train>".into(),
            message: "the model has no classifier head".into(),
        })
}

/// AUROC (bootstrap CI) and per-class accuracy of a classifier on `rows`.
pub fn evaluate_classifier(
    model: &HookedModel,
    tokenizer: &Tokenizer,
    rows: &[&SequenceRow],
    batch_size: usize,
    device: &Device,
) -> Result<ClassifierEvaluation> {
    let mut positive = Vec::with_capacity(rows.len());
    let mut predicted = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(batch_size) {
        let logits = classifier_logits(model, tokenizer, chunk, device)?;
        let probabilities = candle_nn::ops::softmax(&logits, D::Minus1)?;
        let p: Vec<Vec<f32>> = probabilities.to_vec2()?;
        for row in p {
            positive.push(row.get(1).copied().unwrap_or(0.0) as f64);
            let best = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
                .unwrap_or(0);
            predicted.push(best as i64);
        }
    }
    let truth: Vec<bool> = rows.iter().map(|r| r.label == 1).collect();
    let auroc =
        auroc_with_ci(&positive, &truth, 1000, 0.95, 0).ok_or_else(|| GenolensError::Data {
            path: "<evaluation>".into(),
            line: 0,
            message: "the evaluation split needs both classes".into(),
        })?;
    let mut per_class = Vec::new();
    let owned: Vec<SequenceRow> = rows.iter().map(|r| (*r).clone()).collect();
    for (label, name) in class_names(&owned).into_iter().enumerate() {
        let members: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].label == label as i64)
            .collect();
        let correct = members
            .iter()
            .filter(|&&i| predicted[i] == label as i64)
            .count();
        per_class.push((label as i64, name, correct, members.len()));
    }
    let accuracy = (0..rows.len())
        .filter(|&i| predicted[i] == rows[i].label)
        .count() as f64
        / rows.len().max(1) as f64;
    Ok(ClassifierEvaluation {
        auroc,
        per_class,
        accuracy,
        scores: positive,
    })
}

/// A model ready to train: its trainable variables, and what was initialised rather than read.
struct Trainable {
    model: HookedModel,
    vars: Vec<(String, candle_core::Var)>,
    initialised: Vec<String>,
    vocab: KmerVocab,
}

fn pretrained_with_head(
    init: &Path,
    names: &[String],
    training_data: &Path,
    seed: u64,
    device: &Device,
) -> Result<Trainable> {
    let labels = names.len();
    let mut config = ModelConfig::from_file(&init.join("config.json"))?;
    config.set_class_names(names);
    config.genolens = Some(GenolensRecord {
        training_data: Some(TrainingData {
            path: training_data.display().to_string(),
            sha256: sha256_file(training_data)?,
        }),
    });
    config.architectures = None;
    let vocab = KmerVocab::from_file(&init.join("vocab.txt"))?;
    let weights = init.join("model.safetensors");
    // The MLM head is not used by a classifier: drop it, keep the encoder exactly.
    let normalised = normalise(
        read_tensors(&weights)?,
        Some(HeadKind::Encoder { pooler: false }),
        &config,
    )?;
    let taker = WeightTaker::new(&weights, normalised.tensors, device);
    let mut source = EncoderWithNewHead::new(taker, seed, vocab.special.pad, device);
    let mut vars = VarSource::new(&mut source);
    let model = HookedModel::build(
        &config,
        HeadKind::SequenceClassification { num_labels: labels },
        &mut vars,
        device,
    )?;
    let vars = vars.vars;
    let initialised = source.initialised.clone();
    source.checkpoint.finish()?;
    Ok(Trainable {
        model,
        vars,
        initialised,
        vocab,
    })
}

/// Fine-tunes and writes the model into `out/` (HF layout), with `log.tsv`.
pub fn train_classifier(settings: &ClassifySettings, device: &Device) -> Result<ClassifyReport> {
    let rows = read_sequence_rows(&settings.data)?;
    let names = class_names(&rows);
    let split = |name: &str| rows.iter().filter(|r| r.split == name).collect::<Vec<_>>();
    let (train, valid, test) = (split("train"), split("valid"), split("test"));
    if train.is_empty() || test.is_empty() {
        return Err(GenolensError::Data {
            path: settings.data.clone(),
            line: 0,
            message: format!(
                "needs train and test rows in the split column (train {}, valid {}, test {})",
                train.len(),
                valid.len(),
                test.len()
            ),
        });
    }
    let Trainable {
        model,
        vars,
        initialised,
        vocab,
    } = pretrained_with_head(
        &settings.init,
        &names,
        &settings.data,
        settings.seed,
        device,
    )?;
    tracing::info!(
        "initialised from seed {}: {}",
        settings.seed,
        initialised.join(", ")
    );
    let tokenizer: Tokenizer =
        KmerTokenizer::new(vocab.clone(), model.config().max_position_embeddings).into();
    let mut optimiser = AdamW::new(vars, settings.adamw)?;
    let steps_per_epoch = train.len().div_ceil(settings.batch_size);
    let total = steps_per_epoch * settings.epochs;
    let warmup = ((total as f64) * settings.warmup_fraction).round() as usize;
    std::fs::create_dir_all(&settings.out).map_err(|e| GenolensError::io(&settings.out, e))?;
    let log_path = settings.out.join("log.tsv");
    let mut log = std::fs::File::create(&log_path).map_err(|e| GenolensError::io(&log_path, e))?;
    writeln!(
        log,
        "step\tepoch\ttrain_loss\tlearning_rate\tvalid_auroc\tvalid_accuracy"
    )
    .map_err(|e| GenolensError::io(&log_path, e))?;
    let progress = crate::progress::bar(total as u64, "fine-tuning");
    let clock = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut step = 0usize;
    let mut valid_reports = Vec::new();
    for epoch in 0..settings.epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(settings.batch_size) {
            let batch_rows: Vec<&SequenceRow> = chunk.iter().map(|&i| train[i]).collect();
            let dropout = dropout_hooks(
                settings.dropout,
                settings.seed,
                step,
                model.config().num_hidden_layers,
            );
            let logits = logits_with_hooks(&model, &tokenizer, &batch_rows, &dropout, device)?;
            let labels: Vec<u32> = batch_rows.iter().map(|r| r.label as u32).collect();
            let labels = Tensor::from_vec(labels, batch_rows.len(), device)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &labels)?;
            let lr = linear_warmup_decay(step, total, warmup, settings.learning_rate);
            optimiser.step(&loss.backward()?, lr)?;
            let loss = loss.to_scalar::<f32>()?;
            step += 1;
            writeln!(log, "{step}\t{}\t{loss:.5}\t{lr:.3e}\t\t", epoch + 1)
                .map_err(|e| GenolensError::io(&log_path, e))?;
            progress.set_message(format!("epoch {} loss {loss:.3}", epoch + 1));
            progress.inc(1);
        }
        if !valid.is_empty() {
            let evaluation =
                evaluate_classifier(&model, &tokenizer, &valid, settings.batch_size, device)?;
            writeln!(
                log,
                "{step}\t{}\t\t\t{:.5}\t{:.5}",
                epoch + 1,
                evaluation.auroc.value,
                evaluation.accuracy
            )
            .map_err(|e| GenolensError::io(&log_path, e))?;
            crate::progress::report_line(
                &progress,
                format!(
                    "epoch {}: valid AUROC {:.4}, accuracy {:.4}",
                    epoch + 1,
                    evaluation.auroc.value,
                    evaluation.accuracy
                ),
            );
            valid_reports.push(evaluation);
        }
    }
    progress.finish_and_clear();
    let wall_seconds = clock.elapsed().as_secs_f64();
    let test_eval = evaluate_classifier(&model, &tokenizer, &test, settings.batch_size, device)?;
    save_model(&settings.out, &model, &vocab, Some(&names))?;
    Ok(ClassifyReport {
        valid: valid_reports,
        test: test_eval,
        initialised,
        wall_seconds,
        steps: step,
    })
}
