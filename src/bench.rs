//! Benchmark cases run side by side with the PyTorch reference (tests/reference/bench.py drives
//! both, alternating, on the same weights and inputs). Each process times one case after a warm-up.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};

use crate::commands::embed::{run_embed, EmbedSettings, Pooling};
use crate::data::TableColumns;
use crate::error::{GenolensError, Result};
use crate::model::source::VarSource;
use crate::model::weights::WeightTaker;
use crate::model::{load_dir, Batch, HeadKind, HookedModel, Hooks, LoadOptions, ModelConfig};
use crate::tokenize::KmerVocab;
use crate::train::adamw::{AdamW, AdamWSettings};

/// Model shapes benchmarked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchShape {
    /// DNABERT-6 / BERT-base: 12 layers, hidden 768, 12 heads, MLP 3072, vocab 4101.
    BertBase,
    /// A mini DNABERT-6 shape: 6 layers, hidden 256, 8 heads, MLP 1024, vocab 4101 (the default
    /// models' shape until they were retrained on the CPU at hidden 128; kept so bench rows compare).
    Mini,
    /// The committed default models' shape (`data/models/mini-dnabert6*`): 6 layers, hidden 128,
    /// 4 heads, MLP 512, vocab 4101.
    Default,
    /// No model: the JASPAR 2024 CORE vertebrate motifs (879), the `tomtom` case's database.
    Jaspar,
    /// DNABERT-2-117M's shape (12 × 768, 12 heads, GEGLU 3072, vocab 4096), weights written by
    /// the reference side in the hub's layout (`bench.py make-family-inputs`).
    Dnabert2,
    /// NT-v2-50m-multi-species's shape (12 × 512, 16 heads, SwiGLU 2048, vocab 4107), weights
    /// written by the reference side.
    NtV2,
}

impl BenchShape {
    /// Parses a shape name (`bert-base`, `mini`, `default`, ...).
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "bert-base" => Ok(BenchShape::BertBase),
            "mini" => Ok(BenchShape::Mini),
            "default" => Ok(BenchShape::Default),
            "jaspar" => Ok(BenchShape::Jaspar),
            "dnabert2-117m" => Ok(BenchShape::Dnabert2),
            "nt-v2-50m" => Ok(BenchShape::NtV2),
            _ => Err(bench_error(format!(
                "unknown shape {name:?} (bert-base, mini, default, jaspar, dnabert2-117m, nt-v2-50m)"
            ))),
        }
    }

    /// Name used in case ids and folders.
    pub fn name(self) -> &'static str {
        match self {
            BenchShape::BertBase => "bert-base",
            BenchShape::Mini => "mini",
            BenchShape::Default => "default",
            BenchShape::Jaspar => "jaspar",
            BenchShape::Dnabert2 => "dnabert2-117m",
            BenchShape::NtV2 => "nt-v2-50m",
        }
    }

    /// The architecture (none for the motif database).
    pub fn config(self) -> Option<ModelConfig> {
        match self {
            BenchShape::BertBase => Some(ModelConfig::bert(4101, 12, 768, 12, 3072, 512)),
            BenchShape::Mini => Some(ModelConfig::bert(4101, 6, 256, 8, 1024, 512)),
            BenchShape::Default => Some(ModelConfig::bert(4101, 6, 128, 4, 512, 512)),
            BenchShape::Jaspar | BenchShape::Dnabert2 | BenchShape::NtV2 => None,
        }
    }
}

fn bench_error(message: String) -> GenolensError {
    GenolensError::Hook {
        hook: "bench".into(),
        message,
    }
}

/// Folder of the weights for a shape and head under `root`.
pub fn weights_dir(root: &Path, shape: BenchShape, head: &str) -> PathBuf {
    root.join(format!("{}-{head}", shape.name()))
}

/// Writes seeded random weights (HF layout, safetensors) for every shape with a classifier and an
/// MLM head, plus the FASTA inputs of the embed cases.
pub fn make_inputs(root: &Path, seed: u64) -> Result<()> {
    for shape in [BenchShape::BertBase, BenchShape::Mini, BenchShape::Default] {
        for (head, kind) in [
            ("cls", HeadKind::SequenceClassification { num_labels: 2 }),
            ("mlm", HeadKind::MaskedLm),
        ] {
            let dir = weights_dir(root, shape, head);
            std::fs::create_dir_all(&dir).map_err(|e| GenolensError::io(&dir, e))?;
            let config = shape.config().expect("a model shape");
            let model = HookedModel::random(&config, kind, seed, &Device::Cpu)?;
            let mut tensors: std::collections::HashMap<String, Tensor> = model
                .named_parameters()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if kind == HeadKind::MaskedLm {
                // save_pretrained omits the tied decoder; the loader re-ties it.
                tensors.remove("cls.predictions.decoder.weight");
            }
            candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
            let mut config_json: serde_json::Value =
                serde_json::from_str(&config.to_json()).expect("valid json");
            let architecture = if head == "cls" {
                "BertForSequenceClassification"
            } else {
                "BertForMaskedLM"
            };
            config_json["architectures"] = serde_json::json!([architecture]);
            std::fs::write(dir.join("config.json"), config_json.to_string())
                .map_err(|e| GenolensError::io(&dir, e))?;
            std::fs::write(dir.join("vocab.txt"), KmerVocab::dnabert(6).to_file_text())
                .map_err(|e| GenolensError::io(&dir, e))?;
        }
    }
    write_tomtom_inputs(root, seed)?;
    for count in [1000usize, 10_000] {
        let path = root.join(format!("sequences-{count}.fa"));
        let mut text = String::with_capacity(count * 220);
        for index in 0..count {
            text.push_str(&format!(">s{index}\n{}\n", bench_sequence(index, 200)));
        }
        std::fs::write(&path, text).map_err(|e| GenolensError::io(&path, e))?;
    }
    Ok(())
}

/// The JASPAR vertebrate database the `tomtom` case compares with.
pub const JASPAR_VERTEBRATES: &str =
    include_str!("../data/jaspar/JASPAR2024_CORE_vertebrates.meme");

/// `jaspar-vertebrates.meme` and `tomtom-queries.meme` (1000 queries: JASPAR motifs taken in turn,
/// every column mixed 70/30 with a seeded random column, a seeded 0-2 columns trimmed from each
/// end), read by both sides of the `tomtom` case.
fn write_tomtom_inputs(root: &Path, seed: u64) -> Result<()> {
    use rand::{Rng, SeedableRng};
    let database = root.join("jaspar-vertebrates.meme");
    std::fs::write(&database, JASPAR_VERTEBRATES).map_err(|e| GenolensError::io(&database, e))?;
    let targets = crate::motif::read_meme(&database)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x7070);
    let queries: Vec<crate::motif::Motif> = (0..1000)
        .map(|i| {
            let motif = &targets[(i * 7) % targets.len()];
            let width = motif.width();
            let (mut left, mut right) = (rng.random_range(0..3), rng.random_range(0..3));
            if width < left + right + 6 {
                (left, right) = (0, 0);
            }
            let columns = motif.columns[left..width - right]
                .iter()
                .map(|c| {
                    let noise: [f64; 4] = std::array::from_fn(|_| rng.random::<f64>());
                    let total: f64 = noise.iter().sum();
                    std::array::from_fn(|k| 0.7 * c[k] + 0.3 * noise[k] / total)
                })
                .collect();
            crate::motif::Motif {
                id: format!("q{i}"),
                name: motif.id.clone(),
                columns,
            }
        })
        .collect();
    let path = root.join("tomtom-queries.meme");
    std::fs::write(&path, crate::motif::meme::meme_text(&queries, None))
        .map_err(|e| GenolensError::io(&path, e))
}

/// A deterministic pseudo-random DNA sequence (same formula in the Python reference).
pub fn bench_sequence(index: usize, length: usize) -> String {
    const BASES: [char; 4] = ['A', 'C', 'G', 'T'];
    (0..length)
        .map(|position| BASES[(index * 7919 + position * 104_729 + position * position) % 4])
        .collect()
}

/// Deterministic token ids [CLS] k-mer… [SEP] (same formula in the Python reference).
pub fn bench_ids(batch: usize, tokens: usize) -> Vec<Vec<u32>> {
    (0..batch)
        .map(|row| {
            let mut ids = vec![2u32];
            ids.extend((1..tokens - 1).map(|t| 5 + ((row * 7919 + t * 104_729) % 4096) as u32));
            ids.push(3);
            ids
        })
        .collect()
}

/// Token ids of the `mlm-forward` cases (same formula in the Python reference): DNABERT-2
/// `[CLS]=1 … [SEP]=2` over ids 5..4096, the NT `<cls>=3` then ids 6..4102 (its 6-mers).
pub fn family_bench_ids(shape: BenchShape, batch: usize, tokens: usize) -> Result<Vec<Vec<u32>>> {
    let id = |row: usize, t: usize, offset: usize, count: usize| {
        (offset + (row * 7919 + t * 104_729) % count) as u32
    };
    Ok(match shape {
        BenchShape::Dnabert2 => (0..batch)
            .map(|row| {
                let mut ids = vec![1u32];
                ids.extend((1..tokens - 1).map(|t| id(row, t, 5, 4091)));
                ids.push(2);
                ids
            })
            .collect(),
        BenchShape::NtV2 => (0..batch)
            .map(|row| {
                let mut ids = vec![3u32];
                ids.extend((1..tokens).map(|t| id(row, t, 6, 4096)));
                ids
            })
            .collect(),
        other => {
            return Err(bench_error(format!(
                "mlm-forward runs on dnabert2-117m or nt-v2-50m, not {}",
                other.name()
            )))
        }
    })
}

/// REF/ALT token ids of the patch-sweep case: REF = [`bench_ids`] row, ALT = the same with the
/// middle token's id moved by one (same formula in the Python reference).
pub fn patch_pairs(pairs: usize, tokens: usize) -> Vec<(Vec<u32>, Vec<u32>)> {
    bench_ids(pairs, tokens)
        .into_iter()
        .map(|clean| {
            let mut corrupt = clean.clone();
            let middle = tokens / 2;
            corrupt[middle] = 5 + (corrupt[middle] - 5 + 1) % 4096;
            (clean, corrupt)
        })
        .collect()
}

/// Token positions masked in the training-step case (every 7th k-mer, ≈ 15%, same in Python).
fn masked_positions(tokens: usize) -> Vec<usize> {
    (1..tokens - 1).filter(|t| t % 7 == 3).collect()
}

/// A parsed case id: `forward:bert-base:16x200`, `backward:mini:4x512`, `train-step:mini:16x200`,
/// `embed:mini:1000`.
#[derive(Debug, Clone)]
pub struct Case {
    /// forward | backward | train-step | embed.
    pub kind: String,
    /// Model shape.
    pub shape: BenchShape,
    /// Batch size (or sequence count for embed).
    pub batch: usize,
    /// Tokens per sequence (0 for embed).
    pub tokens: usize,
}

impl Case {
    /// Parses a case id.
    pub fn parse(id: &str) -> Result<Self> {
        let parts: Vec<&str> = id.split(':').collect();
        let [kind, shape, size] = parts.as_slice() else {
            return Err(bench_error(format!(
                "case {id:?}: expected kind:shape:BxT or embed:shape:N"
            )));
        };
        let shape = BenchShape::parse(shape)?;
        let bad = || bench_error(format!("case {id:?}: bad size {size:?}"));
        let (batch, tokens) = match size.split_once('x') {
            Some((b, t)) => (b.parse().map_err(|_| bad())?, t.parse().map_err(|_| bad())?),
            None => (size.parse().map_err(|_| bad())?, 0),
        };
        if ![
            "forward",
            "backward",
            "train-step",
            "embed",
            "patch-sweep",
            "attnlrp",
            "ig",
            "ism",
            "tomtom",
            "sae-train",
            "mlm-forward",
            "gemm",
        ]
        .contains(kind)
        {
            return Err(bench_error(format!("case {id:?}: unknown kind {kind:?}")));
        }
        Ok(Case {
            kind: kind.to_string(),
            shape,
            batch,
            tokens,
        })
    }
}

/// The classifier weights of the case's shape and its batch of token ids.
fn classifier_and_batch(case: &Case, root: &Path) -> Result<(crate::model::LoadedModel, Batch)> {
    let loaded = load_dir(
        &weights_dir(root, case.shape, "cls"),
        "bench",
        &LoadOptions::default(),
    )?;
    let batch = Batch::from_ids(&bench_ids(case.batch, case.tokens), 0, &Device::Cpu)?;
    Ok((loaded, batch))
}

/// Runs one case: a warm-up, then the timed run. Returns seconds.
pub fn run_case(case: &Case, root: &Path) -> Result<f64> {
    match case.kind.as_str() {
        "forward" => {
            let (loaded, batch) = classifier_and_batch(case, root)?;
            let hooks = Hooks::none()
                .capture("blocks.0.hook_resid_pre")?
                .capture("blocks.*.hook_normalized_resid_post")?
                .capture("blocks.*.attn.hook_pattern")?;
            time_twice(|| {
                let output = loaded.model.forward(&batch, &hooks)?;
                output.logits.expect("classifier").to_vec2::<f32>()?;
                Ok(())
            })
        }
        "backward" => {
            let (loaded, batch) = classifier_and_batch(case, root)?;
            time_twice(|| {
                // Class 1's logit, read back to the host so the work is really done.
                crate::analysis::gradient_x_input(&loaded.model, &batch, 1)?.to_vec2::<f32>()?;
                Ok(())
            })
        }
        "train-step" => {
            let dir = weights_dir(root, case.shape, "mlm");
            let config = ModelConfig::from_file(&dir.join("config.json"))?;
            let tensors = crate::model::checkpoint::read_tensors(&dir.join("model.safetensors"))?;
            let normalised = crate::model::checkpoint::normalise(tensors, None, &config)?;
            let mut taker = WeightTaker::new(&dir, normalised.tensors, &Device::Cpu);
            let mut vars = VarSource::new(&mut taker);
            let model = HookedModel::build(&config, HeadKind::MaskedLm, &mut vars, &Device::Cpu)?;
            let batch = Batch::from_ids(&bench_ids(case.batch, case.tokens), 0, &Device::Cpu)?;
            let mut optimizer = adamw(vars.vars.clone(), 0.01)?;
            time_twice(|| mlm_step(&model, &batch, &mut optimizer, 2e-4).map(|_| ()))
        }
        "embed" => {
            let loaded = load_dir(
                &weights_dir(root, case.shape, "cls"),
                "bench",
                &LoadOptions::default(),
            )?;
            let out = root.join(format!("embed-out-{}", std::process::id()));
            let settings = EmbedSettings {
                data: root.join(format!("sequences-{}.fa", case.batch)),
                hook: "hook_cls".into(),
                pooling: Pooling::Cls,
                batch_size: 16,
                out: out.clone(),
                columns: TableColumns::default(),
                seed: 0,
            };
            // No warm-up: the whole command is the unit (RSS flatness is the point).
            let start = Instant::now();
            run_embed(&loaded, &settings)?;
            let seconds = start.elapsed().as_secs_f64();
            let _ = std::fs::remove_dir_all(out);
            Ok(seconds)
        }
        "patch-sweep" => {
            // `batch` REF/ALT pairs of `tokens` tokens (ALT = REF with the middle token changed),
            // layer × position sweep of resid_pre at every position, final [CLS] per cell.
            let (loaded, _) = classifier_and_batch(case, root)?;
            let pairs = patch_pairs(case.batch, case.tokens);
            let layers = loaded.model.config().num_hidden_layers;
            let patches: Vec<crate::analysis::patching::Patch> = (0..layers)
                .flat_map(|layer| {
                    (0..case.tokens).map(move |position| crate::analysis::patching::Patch {
                        site: crate::analysis::patching::PatchSite::ResidPre,
                        layer,
                        position: Some(position),
                        head: None,
                    })
                })
                .collect();
            time_twice(|| {
                for (clean, corrupt) in &pairs {
                    let clean = Batch::from_ids(std::slice::from_ref(clean), 0, &Device::Cpu)?;
                    let corrupt = Batch::from_ids(std::slice::from_ref(corrupt), 0, &Device::Cpu)?;
                    let runs =
                        crate::analysis::patching::PairRuns::new(&loaded.model, &clean, &corrupt)?;
                    let patched = runs.patch(
                        &loaded.model,
                        &patches,
                        crate::analysis::patching::PatchSource::Clean,
                        32,
                    )?;
                    assert_eq!(patched.len(), patches.len());
                }
                Ok(())
            })
        }
        "attnlrp" => {
            // AttnLRP relevance of class 1 per token (LXT's efficient BERT on the PyTorch side).
            let (loaded, batch) = classifier_and_batch(case, root)?;
            let targets = vec![1; case.batch];
            time_twice(|| {
                let results = crate::analysis::attribution::lrp(
                    &loaded.model,
                    &batch,
                    &targets,
                    crate::analysis::attribution::TargetKind::Logit,
                    Some(crate::model::RelevanceRules::AttnLrp),
                )?;
                assert_eq!(results.len(), case.batch);
                Ok(())
            })
        }
        "ig" => {
            // Integrated gradients of class 1, 64 Gauss–Legendre steps from the zero baseline,
            // 8 path points per pass (captum's internal_batch_size = 8 × batch).
            let (loaded, batch) = classifier_and_batch(case, root)?;
            let targets = vec![1; case.batch];
            let settings = crate::analysis::attribution::IgSettings {
                steps: 64,
                points_per_pass: 8,
                ..Default::default()
            };
            time_twice(|| {
                let results = crate::analysis::attribution::integrated_gradients(
                    &loaded.model,
                    &batch,
                    &targets,
                    &settings,
                    4,
                    &[2, 3, 0],
                )?;
                assert_eq!(results.len(), case.batch);
                Ok(())
            })
        }
        "ism" => {
            // ISM of class 1's logit over `batch` sequences of `tokens` nucleotides.
            let loaded = load_dir(
                &weights_dir(root, case.shape, "cls"),
                "bench",
                &LoadOptions::default(),
            )?;
            let sequences: Vec<String> = (0..case.batch)
                .map(|i| bench_sequence(i, case.tokens))
                .collect();
            let run = || -> Result<()> {
                for (i, sequence) in sequences.iter().enumerate() {
                    let result = crate::analysis::attribution::ism(
                        &loaded,
                        &format!("s{i}"),
                        sequence,
                        1,
                        crate::analysis::attribution::TargetKind::Logit,
                        128,
                    )?;
                    assert_eq!(result.deltas.len(), case.tokens);
                }
                Ok(())
            };
            // The whole case is the unit (long enough that a warm-up run would double it).
            let start = Instant::now();
            run()?;
            Ok(start.elapsed().as_secs_f64())
        }
        "tomtom" => {
            // `batch` queries of tomtom-queries.meme against JASPAR vertebrates, both strands, as
            // memelite computes them: Euclidean columns, any overlap.
            let read = |name: &str| -> Result<Vec<Vec<[f64; 4]>>> {
                Ok(crate::motif::read_meme(&root.join(name))?
                    .into_iter()
                    .map(|m| m.columns)
                    .collect())
            };
            let mut queries = read("tomtom-queries.meme")?;
            queries.truncate(case.batch);
            let targets = read("jaspar-vertebrates.meme")?;
            let options = crate::motif::TomtomOptions {
                similarity: crate::motif::ColumnSimilarity::Euclidean,
                min_overlap: 1,
                ..Default::default()
            };
            time_twice(|| {
                let rows = crate::motif::tomtom(&queries, &targets, &options);
                assert_eq!(rows.len(), queries.len());
                Ok(())
            })
        }
        "mlm-forward" => {
            // DNABERT-2 / NT forward with MLM logits at the real shape, on the weights the
            // reference side wrote in the hub's layout.
            let loaded = load_dir(
                &weights_dir(root, case.shape, "mlm"),
                "bench",
                &LoadOptions::default(),
            )?;
            let ids = family_bench_ids(case.shape, case.batch, case.tokens)?;
            let batch = Batch::from_ids(&ids, loaded.tokenizer.special().pad, &Device::Cpu)?;
            time_twice(|| {
                let output = loaded.model.forward(&batch, &Hooks::none())?;
                let logits = output.logits.expect("an MLM head");
                logits.sum_all()?.to_scalar::<f32>()?;
                Ok(())
            })
        }
        "sae-train" => {
            // `tokens` steps of `batch` rows of the shape's hidden width, 8× latents, ReLU-L1
            // (λ 0.2), Adam at 1e-3, one epoch over a deterministic matrix (the reference's).
            use crate::analysis::sae::model::{train, Architecture, Sae, TrainSettings};
            let d = case
                .shape
                .config()
                .ok_or_else(|| bench_error("sae-train needs a model shape".into()))?
                .hidden_size;
            let rows = case.batch * case.tokens;
            let x = Tensor::from_vec(sae_rows(rows, d), (rows, d), &Device::Cpu)?;
            let settings = TrainSettings {
                epochs: 1,
                batch_size: case.batch,
                lr: 1e-3,
                lr_decay: 0.0,
                l1_warmup: 0.0,
                ..Default::default()
            };
            let mut sae = Sae::new(d, 8 * d, Architecture::ReluL1 { l1: 0.2 }, 0)?;
            time_twice(|| {
                train(&mut sae, &x, &settings)?;
                Ok(())
            })
        }
        "gemm" => {
            // The physical limit: the forward's dense products alone (per layer q, k, v, o at
            // hidden × hidden, the MLP's up and down projections) through genolens's dense
            // layer, on `batch × tokens` rows; bench.py counts their FLOPs and sets the
            // forward's rate against this one.
            let config = case
                .shape
                .config()
                .ok_or_else(|| bench_error("gemm needs a model shape".into()))?;
            let (h, f, rows) = (
                config.hidden_size,
                config.intermediate_size,
                case.batch * case.tokens,
            );
            let values = |count: usize, seed: usize| -> Vec<f32> {
                (0..count)
                    .map(|i| ((i * 7919 + seed * 104729) % 2000) as f32 / 1000.0 - 1.0)
                    .collect()
            };
            let cpu = &Device::Cpu;
            let x = Tensor::from_vec(values(rows * h, 1), (rows, h), cpu)?;
            let square = Tensor::from_vec(values(h * h, 2), (h, h), cpu)?;
            let up = Tensor::from_vec(values(f * h, 3), (f, h), cpu)?;
            let down = Tensor::from_vec(values(h * f, 4), (h, f), cpu)?;
            let (bias_h, bias_f) = (
                Tensor::from_vec(values(h, 5), h, cpu)?,
                Tensor::from_vec(values(f, 6), f, cpu)?,
            );
            time_twice(|| {
                let mut total = 0f32;
                for _ in 0..config.num_hidden_layers {
                    for _ in 0..4 {
                        let y = crate::ops::dense::dense_layer(&x, &square, &bias_h)?;
                        total += y.get(0)?.get(0)?.to_scalar::<f32>()?;
                    }
                    let hidden = crate::ops::dense::dense_layer(&x, &up, &bias_f)?;
                    let y = crate::ops::dense::dense_layer(&hidden, &down, &bias_h)?;
                    total += y.get(0)?.get(0)?.to_scalar::<f32>()?;
                }
                std::hint::black_box(total);
                Ok(())
            })
        }
        other => Err(bench_error(format!("unknown kind {other}"))),
    }
}

/// Deterministic SAE bench rows in [-1, 1) (tests/reference/bench.py's `sae_rows`).
pub fn sae_rows(n: usize, d: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * d);
    for r in 0..n {
        for j in 0..d {
            out.push(((r * 7919 + j * 104729 + r * j) % 2000) as f32 / 1000.0 - 1.0);
        }
    }
    out
}

fn time_twice(mut work: impl FnMut() -> Result<()>) -> Result<f64> {
    work()?; // warm-up
    let start = Instant::now();
    work()?;
    Ok(start.elapsed().as_secs_f64())
}

/// genolens's AdamW (the one `genolens train` runs: PyTorch's betas and epsilon, biases and
/// LayerNorm weights not decayed) over the named `parameters`.
pub fn adamw(parameters: Vec<(String, Var)>, weight_decay: f64) -> Result<AdamW> {
    AdamW::new(parameters, AdamWSettings::with_weight_decay(weight_decay))
}

/// One MLM training step (forward, cross-entropy on masked positions, backward, AdamW). Returns the loss.
pub fn mlm_step(model: &HookedModel, batch: &Batch, optimizer: &mut AdamW, lr: f64) -> Result<f32> {
    let (batch_size, tokens) = batch.ids.dims2()?;
    let positions = masked_positions(tokens);
    let ids: Vec<Vec<u32>> = batch.ids.to_vec2()?;
    let mut masked = ids.clone();
    let mut labels = Vec::new();
    let mut flat_positions = Vec::new();
    for (row, row_ids) in ids.iter().enumerate() {
        for &position in &positions {
            labels.push(row_ids[position]);
            masked[row][position] = 4; // [MASK]
            flat_positions.push((row * tokens + position) as u32);
        }
    }
    let masked_batch = Batch::from_ids(&masked, 0, &Device::Cpu)?;
    let logits = model
        .forward(&masked_batch, &Hooks::none())?
        .logits
        .expect("MLM head");
    let vocab = logits.dim(2)?;
    let flat = logits.reshape((batch_size * tokens, vocab))?;
    let index = Tensor::from_vec(flat_positions, labels.len(), &Device::Cpu)?;
    let selected = flat.index_select(&index, 0)?;
    let labels = Tensor::from_vec(labels.clone(), labels.len(), &Device::Cpu)?;
    let loss = candle_nn::loss::cross_entropy(&selected, &labels)?;
    optimizer.step(&loss.backward()?, lr)?;
    Ok(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?)
}

/// Peak resident set size of this process in bytes (VmHWM), where /proc is available.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::weights::RandomInit;

    #[test]
    fn case_ids_parse() {
        let case = Case::parse("backward:bert-base:16x200").unwrap();
        assert_eq!(
            (case.batch, case.tokens, case.shape),
            (16, 200, BenchShape::BertBase)
        );
        assert_eq!(Case::parse("embed:mini:1000").unwrap().batch, 1000);
        assert!(Case::parse("sideways:mini:1x2").is_err());
        assert!(Case::parse("forward:huge:1x2").is_err());
    }

    #[test]
    fn a_training_step_on_a_tiny_model_lowers_the_loss() {
        let config = ModelConfig::tiny(3);
        let mut init = RandomInit::new(5, &Device::Cpu);
        let mut vars = VarSource::new(&mut init);
        let model =
            HookedModel::build(&config, HeadKind::MaskedLm, &mut vars, &Device::Cpu).unwrap();
        let ids: Vec<Vec<u32>> = bench_ids(4, 24)
            .into_iter()
            .map(|r| r.into_iter().map(|i| i % 64 + 5).collect())
            .collect();
        let batch = Batch::from_ids(&ids, 0, &Device::Cpu).unwrap();
        let mut optimizer = adamw(vars.vars.clone(), 0.0).unwrap();
        let first = mlm_step(&model, &batch, &mut optimizer, 1e-2).unwrap();
        let mut last = first;
        for _ in 0..10 {
            last = mlm_step(&model, &batch, &mut optimizer, 1e-2).unwrap();
        }
        assert!(last < first * 0.8, "loss {first} -> {last}");
    }
}
