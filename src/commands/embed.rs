//! `genolens embed`: one pooled vector per sequence from any hook, streamed to long-format Parquet.

use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};

use crate::data::{open_sequences, Example, TableColumns};
use crate::error::{GenolensError, Result};
use crate::model::{mean_over_kmers, Batch, HookPoint, Hooks, LoadedModel};
use crate::report::provenance::now_rfc3339;
use crate::report::{Provenance, RunRecord, TableWriter};

crate::table_row! {
    /// One dimension of one sequence's pooled activation (pivot on `dim` for a matrix).
    pub struct EmbeddingRow {
        /// 0-based position of the sequence in the input file.
        pub sequence_index: u64,
        /// Sequence id from the input.
        pub sequence_id: String,
        /// Label, when the input table has a label column.
        pub label: Option<String>,
        /// Hook the vector was read from.
        pub hook: String,
        /// `cls` or `mean` (over k-mer tokens; never [CLS]/[SEP]/padding) or `none` for per-sequence hooks.
        pub pooling: String,
        /// 0-based dimension.
        pub dim: u32,
        /// Activation value.
        pub value: f32,
    }
}

/// How to pool token activations into one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The [CLS] position.
    Cls,
    /// Mean over k-mer tokens (excluding [CLS], [SEP] and padding).
    Mean,
}

/// Settings of an embed run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EmbedSettings {
    /// Input sequence file.
    pub data: PathBuf,
    /// Hook to read.
    pub hook: String,
    /// Pooling over positions.
    pub pooling: Pooling,
    /// Sequences per forward pass.
    pub batch_size: usize,
    /// Output folder (embeddings.parquet + run.json).
    pub out: PathBuf,
    /// Which table columns to read.
    #[serde(skip)]
    pub columns: TableColumns,
    /// Seed (recorded; embedding is deterministic).
    pub seed: u64,
}

/// What the tokenizer did to the input: N and other IUPAC codes become [UNK] on purpose, and are counted.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TokenizationCounts {
    /// Sequences read.
    pub sequences: usize,
    /// Sequences containing at least one non-ACGT base.
    pub sequences_with_ambiguous_bases: usize,
    /// Non-ACGT bases (N, IUPAC codes).
    pub ambiguous_bases: usize,
    /// k-mer tokens.
    pub kmer_tokens: usize,
    /// k-mer tokens that became [UNK].
    pub unknown_tokens: usize,
}

impl TokenizationCounts {
    fn add(&mut self, tokens: &crate::tokenize::Tokenized) {
        self.sequences += 1;
        self.sequences_with_ambiguous_bases += usize::from(tokens.ambiguous_bases > 0);
        self.ambiguous_bases += tokens.ambiguous_bases;
        self.kmer_tokens += tokens.kmer_count();
        self.unknown_tokens += tokens.unknown_tokens;
    }
}

/// Sequences read ahead and sorted by length, so batches waste little padding.
const BATCHES_PER_CHUNK: usize = 16;

/// Runs the embedding; returns what the tokenizer counted (sequences, [UNK] tokens, ...).
pub fn run_embed(loaded: &LoadedModel, settings: &EmbedSettings) -> Result<TokenizationCounts> {
    if settings.batch_size == 0 {
        return Err(GenolensError::Hook {
            hook: "--batch-size".into(),
            message: "must be at least 1".into(),
        });
    }
    let point: HookPoint = settings.hook.parse()?;
    let started_at = now_rfc3339();
    let provenance = Provenance::current(settings.seed)
        .with_model(&loaded.source)
        .with_data_file(&settings.data)?;
    let table_path = settings.out.join("embeddings.parquet");
    let mut writer = TableWriter::<EmbeddingRow>::create(&table_path, &provenance)?;
    let hooks = Hooks::none().capture_point(point);
    let mut examples = open_sequences(&settings.data, &settings.columns)?;
    let progress = crate::progress::spinner("embedding sequences");
    let mut sequence_index = 0u64;
    let mut counts = TokenizationCounts::default();
    loop {
        let chunk: Vec<Example> = examples
            .by_ref()
            .take(settings.batch_size * BATCHES_PER_CHUNK)
            .collect::<Result<_>>()?;
        if chunk.is_empty() {
            break;
        }
        let vectors = embed_chunk(loaded, &chunk, point, settings, &hooks, &mut counts)?;
        for (example, vector) in chunk.iter().zip(vectors) {
            for (dim, value) in vector.into_iter().enumerate() {
                writer.write(&EmbeddingRow {
                    sequence_index,
                    sequence_id: example.id.clone(),
                    label: example.label.clone(),
                    hook: settings.hook.clone(),
                    pooling: pooling_name(point, settings.pooling, loaded.model.head_kind()).into(),
                    dim: dim as u32,
                    value,
                })?;
            }
            sequence_index += 1;
        }
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    if sequence_index == 0 {
        return Err(GenolensError::Data {
            path: settings.data.clone(),
            line: 0,
            message: "no sequences".into(),
        });
    }
    writer.finish()?;
    if counts.unknown_tokens > 0 {
        tracing::warn!(
            "{} of {} sequences contain N or other IUPAC codes: {} of {} k-mer tokens became [UNK]",
            counts.sequences_with_ambiguous_bases,
            counts.sequences,
            counts.unknown_tokens,
            counts.kmer_tokens
        );
    }
    let mut config = serde_json::to_value(settings).expect("settings serialise");
    config["tokenization"] = serde_json::to_value(&counts).expect("counts serialise");
    RunRecord {
        provenance,
        command: "embed".into(),
        config,
        started_at,
        finished_at: now_rfc3339(),
        outputs: vec!["embeddings.parquet".into()],
    }
    .write(&settings.out)?;
    Ok(counts)
}

fn pooling_name(point: HookPoint, pooling: Pooling, head: crate::model::HeadKind) -> &'static str {
    let per_sequence = matches!(point, HookPoint::Cls | HookPoint::Pooled)
        || (point == HookPoint::Logits && head != crate::model::HeadKind::MaskedLm);
    match (per_sequence, pooling) {
        (true, _) => "none",
        (false, Pooling::Cls) => "cls",
        (false, Pooling::Mean) => "mean",
    }
}

/// Pooled vectors for a chunk, in the chunk's order (batches are formed by length).
fn embed_chunk(
    loaded: &LoadedModel,
    chunk: &[Example],
    point: HookPoint,
    settings: &EmbedSettings,
    hooks: &Hooks,
    counts: &mut TokenizationCounts,
) -> Result<Vec<Vec<f32>>> {
    let tokenized = chunk
        .iter()
        .map(|example| loaded.tokenizer.tokenize(&example.id, &example.sequence))
        .collect::<Result<Vec<_>>>()?;
    tokenized.iter().for_each(|tokens| counts.add(tokens));
    let mut order: Vec<usize> = (0..chunk.len()).collect();
    order.sort_by_key(|&i| tokenized[i].ids.len());
    let mut vectors = vec![Vec::new(); chunk.len()];
    for batch_indices in order.chunks(settings.batch_size) {
        let batch_tokens: Vec<_> = batch_indices
            .iter()
            .map(|&i| tokenized[i].clone())
            .collect();
        let batch = Batch::from_tokenized(
            &batch_tokens,
            loaded.tokenizer.vocab.special.pad,
            loaded.model.device(),
        )?;
        let output = loaded.model.forward(&batch, hooks)?;
        let activation = output.cache.get_point(point).expect("captured hook");
        let pooled = pool(point, activation, &batch, settings.pooling)?;
        let rows: Vec<Vec<f32>> = pooled
            .to_device(&candle_core::Device::Cpu)?
            .to_dtype(DType::F32)?
            .to_vec2()?;
        for (&index, row) in batch_indices.iter().zip(rows) {
            vectors[index] = row;
        }
    }
    Ok(vectors)
}

/// [b, features] from any hook's activation.
fn pool(point: HookPoint, activation: &Tensor, batch: &Batch, pooling: Pooling) -> Result<Tensor> {
    use crate::model::hooks::ActivationLayout;
    let dims = activation.dims().to_vec();
    match point.layout() {
        ActivationLayout::Sequence => Ok(activation.clone()),
        ActivationLayout::HeadQueryKey => Err(GenolensError::hook(
            point,
            "attention scores/patterns are [b,h,q,k] maps, not vectors; use a residual, MLP or head-output hook",
        )),
        _ if point == HookPoint::Logits && dims.len() == 2 => Ok(activation.clone()),
        _ => {
            let flat = activation.reshape((dims[0], dims[1], dims[2..].iter().product::<usize>()))?;
            match pooling {
                Pooling::Cls => Ok(flat.narrow(1, 0, 1)?.squeeze(1)?),
                Pooling::Mean => mean_over_kmers(&flat, &batch.lengths),
            }
        }
    }
}

/// Default output folder for `embed` when none is given.
pub fn default_out(data: &Path) -> PathBuf {
    let stem = data.file_stem().and_then(|s| s.to_str()).unwrap_or("data");
    PathBuf::from("reports").join("embed").join(stem)
}
