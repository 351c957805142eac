//! `genolens embed`: one pooled vector per sequence from any hook, streamed to long-format Parquet.

use std::path::{Path, PathBuf};

use candle_core::DType;

use crate::analysis::{pool_activation, run_forward, BatchOptions};
pub use crate::analysis::{Pooling, TokenizationCounts};
use crate::data::{open_sequences, TableColumns};
use crate::error::{GenolensError, Result};
use crate::model::{HookPoint, Hooks, LoadedModel};
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

/// Runs the embedding; returns what the tokenizer counted (sequences, [UNK] tokens, ...).
/// A run that fails removes the output folder when it created it (no empty `--out` is left).
pub fn run_embed(loaded: &LoadedModel, settings: &EmbedSettings) -> Result<TokenizationCounts> {
    if settings.batch_size == 0 {
        return Err(GenolensError::argument(
            "embed --batch-size 0",
            "must be at least 1 (sequences per forward pass)",
        ));
    }
    // The outermost folder of `out` that does not exist yet: this run creates it.
    let created = settings
        .out
        .ancestors()
        .take_while(|dir| !dir.as_os_str().is_empty() && std::fs::symlink_metadata(dir).is_err())
        .last()
        .map(Path::to_path_buf);
    crate::interrupt::prepare_run_dir(&settings.out, "run.json", |_| true)?;
    let result = embed_into(loaded, settings);
    if let (Err(_), Some(dir)) = (&result, created) {
        // Best effort: the error being returned matters more than a failed clean-up.
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

fn embed_into(loaded: &LoadedModel, settings: &EmbedSettings) -> Result<TokenizationCounts> {
    let point: HookPoint = settings.hook.parse()?;
    let started_at = now_rfc3339();
    let provenance = Provenance::current(settings.seed)
        .with_model(&loaded.source)
        .with_data_file(&settings.data)?;
    let table_path = settings.out.join("embeddings.parquet");
    let mut writer = TableWriter::<EmbeddingRow>::create(&table_path, &provenance)?;
    let hooks = Hooks::none().capture_point(point);
    let examples = open_sequences(&settings.data, &settings.columns)?;
    let options = BatchOptions {
        batch_size: settings.batch_size,
        progress: Some("embedding sequences".into()),
        ..Default::default()
    };
    let pooling = pooling_name(point, settings.pooling, loaded.model.head_kind());
    let mut sequence_index = 0u64;
    let counts = run_forward(
        loaded,
        examples,
        &hooks,
        &options,
        |prepared, output| {
            let activation = output.cache.get_point(point).expect("captured hook");
            let pooled = pool_activation(point, activation, &prepared.batch, settings.pooling)?;
            Ok(pooled
                .to_device(&candle_core::Device::Cpu)?
                .to_dtype(DType::F32)?
                .to_vec2()?)
        },
        |example, vector: Vec<f32>| {
            for (dim, value) in vector.into_iter().enumerate() {
                writer.write(&EmbeddingRow {
                    sequence_index,
                    sequence_id: example.id.clone(),
                    label: example.label.clone(),
                    hook: settings.hook.clone(),
                    pooling: pooling.into(),
                    dim: dim as u32,
                    value,
                })?;
            }
            sequence_index += 1;
            Ok(())
        },
    )?;
    if counts.sequences == 0 {
        return Err(GenolensError::Data {
            path: settings.data.clone(),
            line: 0,
            message: "no sequences".into(),
        });
    }
    writer.finish()?;
    counts.warn_if_unknown();
    let mut config = serde_json::to_value(settings).expect("settings serialise");
    config["tokenization"] = serde_json::to_value(&counts).expect("counts serialise");
    if loaded.model.config().legacy_double_bias {
        config["legacy_double_bias"] = true.into();
    }
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
    match (
        crate::analysis::pooling::is_per_sequence(point, head),
        pooling,
    ) {
        (true, _) => "none",
        (false, Pooling::Cls) => "cls",
        (false, Pooling::Mean) => "mean",
    }
}

/// Default output folder for `embed` when none is given.
pub fn default_out(data: &Path) -> PathBuf {
    let stem = data.file_stem().and_then(|s| s.to_str()).unwrap_or("data");
    PathBuf::from("reports").join("embed").join(stem)
}
