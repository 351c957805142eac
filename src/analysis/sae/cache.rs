//! Activations for SAE training, streamed to an on-disk cache so that sets larger than memory
//! train: `shard-NNNNN.safetensors` files (`activations` f32 [n, d], `sequence` u32 [n] = the
//! row's sequence index, `token` u32 [n] = its token position, 0 for pooled rows), a
//! `sequences.parquet` (sequence_index, sequence_id, label, sequence) and `cache.json` written
//! last (an interrupted run leaves no cache that opens).
//!
//! Rows are stored as the model produced them; readers get them multiplied by the
//! normalisation factor s = 1 / √(mean ‖x‖²), so that the mean squared norm is 1 (saved in
//! cache.json as `scale`; an SAE trained on s·x is folded back to raw activations with
//! [`Sae::fold_input_scale`](super::model::Sae::fold_input_scale) before saving).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::analysis::{pool_activation, run_forward, BatchOptions, Pooling};
use crate::data::Example;
use crate::error::{GenolensError, Result};
use crate::model::hooks::ActivationLayout;
use crate::model::{Batch, HookPoint, Hooks, LoadedModel};
use crate::report::atomic::write_atomic;
use crate::report::{Provenance, TableWriter};

/// Rows a training loop can draw from, shard by shard.
pub trait RowSource {
    /// Width of a row.
    fn d_in(&self) -> usize;
    /// Number of rows.
    fn rows(&self) -> usize;
    /// Number of shards.
    fn shards(&self) -> usize;
    /// Rows of shard `index`.
    fn shard_rows(&self, index: usize) -> usize;
    /// Shard `index` as [rows, d_in] (normalised where the source normalises).
    fn shard(&self, index: usize) -> Result<Tensor>;
}

/// A matrix in memory is a source with one shard.
impl RowSource for Tensor {
    fn d_in(&self) -> usize {
        self.dims().last().copied().unwrap_or(0)
    }
    fn rows(&self) -> usize {
        self.dims().first().copied().unwrap_or(0)
    }
    fn shards(&self) -> usize {
        1
    }
    fn shard_rows(&self, _: usize) -> usize {
        self.rows()
    }
    fn shard(&self, _: usize) -> Result<Tensor> {
        Ok(self.clone())
    }
}

/// Which rows a hook gives.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum RowKind {
    /// The [CLS] position (one row per sequence).
    Cls,
    /// The mean over k-mer tokens, never [CLS], [SEP] or padding (one row per sequence).
    Mean,
    /// Every k-mer token (one row per token; for per-nucleotide concepts).
    Tokens,
    /// A per-sequence hook (`hook_cls`, `hook_pooled`) as it is.
    None,
}

impl RowKind {
    /// The name in cache.json and tables.
    pub fn name(self) -> &'static str {
        match self {
            RowKind::Cls => "cls",
            RowKind::Mean => "mean",
            RowKind::Tokens => "tokens",
            RowKind::None => "none",
        }
    }

    /// One row per sequence (not per token).
    pub fn per_sequence(self) -> bool {
        self != RowKind::Tokens
    }
}

/// One shard's entry in cache.json.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ShardInfo {
    /// File name inside the cache folder.
    pub file: String,
    /// Rows in it.
    pub rows: usize,
}

/// cache.json.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CacheMeta {
    /// Hook the rows were read at (or the embeddings table's hook).
    pub hook: String,
    /// Which rows.
    pub rows_from: RowKind,
    /// Row width.
    pub d_in: usize,
    /// Total rows.
    pub rows: usize,
    /// Sequences the rows come from.
    pub sequences: usize,
    /// Mean squared norm of the stored rows.
    pub mean_squared_norm: f64,
    /// Normalisation factor s = 1/√(mean squared norm): readers get s·x.
    pub scale: f64,
    /// The shards in order.
    pub shards: Vec<ShardInfo>,
    /// Model the activations came from (id or path), when known.
    pub model: Option<String>,
    /// Input file.
    pub data: Option<String>,
}

crate::table_row! {
    /// One sequence of an activation cache.
    pub struct SequenceRow {
        /// 0-based index (the `sequence` of the shards' rows).
        pub sequence_index: u64,
        /// Sequence id from the input.
        pub sequence_id: String,
        /// Label, when the input has one.
        pub label: Option<String>,
        /// The DNA, when the cache was built from sequences (not from an embeddings table).
        pub sequence: Option<String>,
    }
}

/// A finished cache on disk.
pub struct ActivationCache {
    /// The cache folder.
    pub dir: PathBuf,
    /// Its cache.json.
    pub meta: CacheMeta,
}

/// One shard's rows with where each comes from.
pub struct ShardRows {
    /// [n, d_in] raw activations (not normalised).
    pub activations: Tensor,
    /// Sequence index of each row.
    pub sequence: Vec<u32>,
    /// Token position of each row (0 for per-sequence rows).
    pub token: Vec<u32>,
}

impl ActivationCache {
    /// Opens a finished cache (its cache.json names every shard).
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join("cache.json");
        let text = std::fs::read_to_string(&path).map_err(|e| GenolensError::Data {
            path: path.clone(),
            line: 0,
            message: format!("not an activation cache ({e}); build one with `genolens sae train --model … --data …`"),
        })?;
        let meta: CacheMeta = serde_json::from_str(&text).map_err(|e| GenolensError::Data {
            path: path.clone(),
            line: e.line(),
            message: format!("cache.json: {e}"),
        })?;
        Ok(ActivationCache {
            dir: dir.to_path_buf(),
            meta,
        })
    }

    /// Shard `index` raw, with each row's sequence and token.
    pub fn shard_rows(&self, index: usize) -> Result<ShardRows> {
        let info = self.meta.shards.get(index).ok_or_else(|| {
            GenolensError::argument("shard", format!("{index} of {}", self.meta.shards.len()))
        })?;
        let path = self.dir.join(&info.file);
        let tensors = candle_core::safetensors::load(&path, &Device::Cpu)?;
        let get = |name: &str| {
            tensors
                .get(name)
                .cloned()
                .ok_or_else(|| GenolensError::Data {
                    path: path.clone(),
                    line: 0,
                    message: format!("no tensor `{name}` (expected activations, sequence, token)"),
                })
        };
        let activations = get("activations")?;
        if activations.dims() != [info.rows, self.meta.d_in] {
            return Err(GenolensError::Data {
                path,
                line: 0,
                message: format!(
                    "activations are {:?}, cache.json says [{}, {}]",
                    activations.dims(),
                    info.rows,
                    self.meta.d_in
                ),
            });
        }
        Ok(ShardRows {
            activations,
            sequence: get("sequence")?.to_vec1::<u32>()?,
            token: get("token")?.to_vec1::<u32>()?,
        })
    }

    /// The sequences table.
    pub fn sequences(&self) -> Result<Vec<SequenceRow>> {
        let table = crate::report::ParquetTable::read(&self.dir.join("sequences.parquet"))?;
        let index = table.integers("sequence_index")?;
        let ids = table.strings("sequence_id")?;
        let labels = table.optional_strings("label")?;
        let sequences = table.optional_strings("sequence")?;
        Ok((0..table.rows())
            .map(|i| SequenceRow {
                sequence_index: index[i] as u64,
                sequence_id: ids[i].clone(),
                label: labels[i].clone(),
                sequence: sequences[i].clone(),
            })
            .collect())
    }

    /// Every row, raw, in cache order (for sets that fit in memory: analysis and metrics).
    pub fn all_rows(&self) -> Result<ShardRows> {
        let mut parts = Vec::new();
        let (mut sequence, mut token) = (Vec::new(), Vec::new());
        for s in 0..self.meta.shards.len() {
            let shard = self.shard_rows(s)?;
            parts.push(shard.activations);
            sequence.extend(shard.sequence);
            token.extend(shard.token);
        }
        let activations = if parts.is_empty() {
            Tensor::zeros((0, self.meta.d_in), DType::F32, &Device::Cpu)?
        } else {
            Tensor::cat(&parts, 0)?
        };
        Ok(ShardRows {
            activations,
            sequence,
            token,
        })
    }
}

impl RowSource for ActivationCache {
    fn d_in(&self) -> usize {
        self.meta.d_in
    }
    fn rows(&self) -> usize {
        self.meta.rows
    }
    fn shards(&self) -> usize {
        self.meta.shards.len()
    }
    fn shard_rows(&self, index: usize) -> usize {
        self.meta.shards[index].rows
    }
    fn shard(&self, index: usize) -> Result<Tensor> {
        Ok((self.shard_rows(index)?.activations * self.meta.scale)?)
    }
}

/// A cache's rows as stored (not normalised): for SAEs folded back to raw activations.
pub struct RawRows<'a>(pub &'a ActivationCache);

impl RowSource for RawRows<'_> {
    fn d_in(&self) -> usize {
        self.0.meta.d_in
    }
    fn rows(&self) -> usize {
        self.0.meta.rows
    }
    fn shards(&self) -> usize {
        self.0.meta.shards.len()
    }
    fn shard_rows(&self, index: usize) -> usize {
        self.0.meta.shards[index].rows
    }
    fn shard(&self, index: usize) -> Result<Tensor> {
        Ok(self.0.shard_rows(index)?.activations)
    }
}

/// Writes a cache shard by shard.
pub struct CacheWriter {
    dir: PathBuf,
    hook: String,
    rows_from: RowKind,
    rows_per_shard: usize,
    d_in: Option<usize>,
    buffer: Vec<f32>,
    sequence: Vec<u32>,
    token: Vec<u32>,
    shards: Vec<ShardInfo>,
    rows: usize,
    squared_norm: f64,
    sequences: TableWriter<SequenceRow>,
    sequence_count: usize,
    /// Model id or path for cache.json.
    pub model: Option<String>,
    /// Input file for cache.json.
    pub data: Option<String>,
}

/// About 32 MiB of f32 per shard.
const SHARD_VALUES: usize = 8 << 20;

impl CacheWriter {
    /// Starts a cache in `dir` (created; an old cache.json and shards there are removed first).
    pub fn create(
        dir: &Path,
        hook: &str,
        rows_from: RowKind,
        provenance: &Provenance,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| GenolensError::io(dir, e))?;
        let old = dir.join("cache.json");
        if old.exists() {
            std::fs::remove_file(&old).map_err(|e| GenolensError::io(&old, e))?;
        }
        for entry in std::fs::read_dir(dir).map_err(|e| GenolensError::io(dir, e))? {
            let path = entry.map_err(|e| GenolensError::io(dir, e))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.starts_with("shard-") && name.ends_with(".safetensors") {
                std::fs::remove_file(&path).map_err(|e| GenolensError::io(&path, e))?;
            }
        }
        Ok(CacheWriter {
            dir: dir.to_path_buf(),
            hook: hook.to_string(),
            rows_from,
            rows_per_shard: 0,
            d_in: None,
            buffer: Vec::new(),
            sequence: Vec::new(),
            token: Vec::new(),
            shards: Vec::new(),
            rows: 0,
            squared_norm: 0.0,
            sequences: TableWriter::create(&dir.join("sequences.parquet"), provenance)?,
            sequence_count: 0,
            model: None,
            data: None,
        })
    }

    /// Records one sequence; returns its index (the `sequence` of its rows).
    pub fn add_sequence(
        &mut self,
        id: &str,
        label: Option<String>,
        sequence: Option<String>,
    ) -> Result<u32> {
        let index = self.sequence_count as u32;
        self.sequences.write(&SequenceRow {
            sequence_index: index as u64,
            sequence_id: id.to_string(),
            label,
            sequence,
        })?;
        self.sequence_count += 1;
        Ok(index)
    }

    /// Appends one row.
    pub fn push(&mut self, row: &[f32], sequence: u32, token: u32) -> Result<()> {
        let d = *self.d_in.get_or_insert(row.len());
        if row.len() != d || d == 0 {
            return Err(GenolensError::argument(
                "activations",
                format!("row of {} values in a cache of width {d}", row.len()),
            ));
        }
        if let Some(bad) = row.iter().find(|v| !v.is_finite()) {
            return Err(GenolensError::argument(
                "activations",
                format!("sequence {sequence}, token {token}: non-finite value {bad}"),
            ));
        }
        if self.rows_per_shard == 0 {
            self.rows_per_shard = (SHARD_VALUES / d).max(1);
        }
        self.squared_norm += row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>();
        self.buffer.extend_from_slice(row);
        self.sequence.push(sequence);
        self.token.push(token);
        self.rows += 1;
        if self.sequence.len() >= self.rows_per_shard {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let n = self.sequence.len();
        if n == 0 {
            return Ok(());
        }
        let d = self.d_in.unwrap_or(0);
        let file = format!("shard-{:05}.safetensors", self.shards.len());
        let tensors: HashMap<String, Tensor> = [
            (
                "activations",
                Tensor::from_vec(std::mem::take(&mut self.buffer), (n, d), &Device::Cpu)?,
            ),
            (
                "sequence",
                Tensor::from_vec(std::mem::take(&mut self.sequence), n, &Device::Cpu)?,
            ),
            (
                "token",
                Tensor::from_vec(std::mem::take(&mut self.token), n, &Device::Cpu)?,
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let path = self.dir.join(&file);
        let temp = crate::report::atomic::temp_path(&path);
        candle_core::safetensors::save(&tensors, &temp)?;
        std::fs::rename(&temp, &path).map_err(|e| GenolensError::io(&path, e))?;
        self.shards.push(ShardInfo { file, rows: n });
        Ok(())
    }

    /// Writes the last shard, the sequences table and cache.json; returns the opened cache.
    pub fn finish(mut self) -> Result<ActivationCache> {
        self.flush()?;
        if self.rows == 0 {
            return Err(GenolensError::argument(
                "activations",
                "no rows were cached (no sequences?)",
            ));
        }
        let mean_squared_norm = self.squared_norm / self.rows as f64;
        if mean_squared_norm <= 0.0 {
            return Err(GenolensError::argument(
                "activations",
                "every cached row is zero: nothing to normalise or learn",
            ));
        }
        self.sequences.finish()?;
        let meta = CacheMeta {
            hook: self.hook,
            rows_from: self.rows_from,
            d_in: self.d_in.unwrap_or(0),
            rows: self.rows,
            sequences: self.sequence_count,
            mean_squared_norm,
            scale: 1.0 / mean_squared_norm.sqrt(),
            shards: self.shards,
            model: self.model,
            data: self.data,
        };
        let json = serde_json::to_string_pretty(&meta).expect("cache meta serialises");
        write_atomic(&self.dir.join("cache.json"), json.as_bytes())?;
        Ok(ActivationCache {
            dir: self.dir,
            meta,
        })
    }
}

/// What rows `point` gives under `requested` pooling: per-sequence hooks give `None`.
pub fn row_kind(
    point: HookPoint,
    requested: RowKind,
    head: crate::model::HeadKind,
) -> Result<RowKind> {
    let per_sequence = crate::analysis::pooling::is_per_sequence(point, head);
    if matches!(point.layout(), ActivationLayout::HeadQueryKey) {
        return Err(GenolensError::hook(
            point,
            "attention scores/patterns are [b,h,q,k] maps, not vectors; use a residual, MLP or head-output hook",
        ));
    }
    Ok(match (per_sequence, requested) {
        (true, RowKind::Tokens) => {
            return Err(GenolensError::hook(
                point,
                "holds one vector per sequence; `--rows tokens` needs a token hook such as blocks.5.hook_resid_post",
            ))
        }
        (true, _) => RowKind::None,
        (false, RowKind::None) => RowKind::Cls,
        (false, kind) => kind,
    })
}

/// Runs `loaded` over `examples`, caching `point`'s activations as `rows` into `dir`.
pub fn cache_from_model(
    loaded: &LoadedModel,
    examples: impl IntoIterator<Item = Result<Example>>,
    point: HookPoint,
    rows: RowKind,
    options: &BatchOptions,
    dir: &Path,
    provenance: &Provenance,
) -> Result<ActivationCache> {
    let kind = row_kind(point, rows, loaded.model.head_kind())?;
    let mut writer = CacheWriter::create(dir, &point.to_string(), kind, provenance)?;
    writer.model = Some(loaded.source.id.clone());
    let hooks = Hooks::none().capture_point(point);
    run_forward(
        loaded,
        examples,
        &hooks,
        options,
        |prepared, output| {
            let activation = output.cache.get_point(point).expect("captured hook");
            batch_rows(point, activation, &prepared.batch, kind)
        },
        |example, rows: SequenceRows| {
            let index = writer.add_sequence(
                &example.id,
                example.label.clone(),
                Some(example.sequence.clone()),
            )?;
            for (token, row) in rows {
                writer.push(&row, index, token)?;
            }
            Ok(())
        },
    )?;
    writer.finish()
}

/// One sequence's rows: (token position, vector) pairs.
pub type SequenceRows = Vec<(u32, Vec<f32>)>;

/// The rows of one batch's activation, per sequence.
pub fn batch_rows(
    point: HookPoint,
    activation: &Tensor,
    batch: &Batch,
    kind: RowKind,
) -> Result<Vec<SequenceRows>> {
    let to_rows = |t: Tensor| -> Result<Vec<Vec<f32>>> {
        Ok(t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.to_vec2()?)
    };
    match kind {
        RowKind::Cls | RowKind::Mean | RowKind::None => {
            let pooling = if kind == RowKind::Mean {
                Pooling::Mean
            } else {
                Pooling::Cls
            };
            let pooled = pool_activation(point, activation, batch, pooling)?;
            Ok(to_rows(pooled)?
                .into_iter()
                .map(|row| vec![(0, row)])
                .collect())
        }
        RowKind::Tokens => {
            let dims = activation.dims().to_vec();
            let flat =
                activation.reshape((dims[0], dims[1], dims[2..].iter().product::<usize>()))?;
            let mut out = Vec::with_capacity(dims[0]);
            for b in 0..batch.size() {
                let positions = batch.sequence_positions(b);
                let rows = to_rows(flat.get(b)?.narrow(0, 1, positions.len())?)?;
                out.push(
                    rows.into_iter()
                        .enumerate()
                        .map(|(i, row)| (i as u32 + 1, row))
                        .collect(),
                );
            }
            Ok(out)
        }
    }
}

/// Builds a cache from an `embeddings.parquet` written by `genolens embed` (one row per sequence
/// and dimension): rows in sequence order, the table's hook and pooling recorded.
pub fn cache_from_embeddings(
    table_path: &Path,
    dir: &Path,
    provenance: &Provenance,
) -> Result<ActivationCache> {
    let table = crate::report::ParquetTable::read(table_path)?;
    let need = |name: &str| -> Result<()> {
        if table.column_names().iter().any(|c| c == name) {
            Ok(())
        } else {
            Err(GenolensError::Data {
                path: table_path.to_path_buf(),
                line: 0,
                message: format!(
                    "no column `{name}` (an embeddings.parquet from `genolens embed` has sequence_index, sequence_id, label, hook, pooling, dim, value)"
                ),
            })
        }
    };
    for name in [
        "sequence_index",
        "sequence_id",
        "dim",
        "value",
        "hook",
        "pooling",
    ] {
        need(name)?;
    }
    let index = table.integers("sequence_index")?;
    let ids = table.strings("sequence_id")?;
    let labels = table
        .optional_strings("label")
        .unwrap_or_else(|_| vec![None; table.rows()]);
    let dims = table.integers("dim")?;
    let values = table.f64s("value")?;
    let hooks = table.strings("hook")?;
    let pooling = table.strings("pooling")?;
    let rows_from = match pooling.first().map(String::as_str) {
        Some("mean") => RowKind::Mean,
        Some("cls") => RowKind::Cls,
        _ => RowKind::None,
    };
    let hook = hooks.first().cloned().unwrap_or_default();
    if let Some(i) = (0..table.rows()).find(|&i| hooks[i] != hook || pooling[i] != pooling[0]) {
        return Err(GenolensError::Data {
            path: table_path.to_path_buf(),
            line: i + 1,
            message: format!(
                "row {i} is {}/{}, row 0 {hook}/{}: one hook and pooling per table",
                hooks[i], pooling[i], pooling[0]
            ),
        });
    }
    let width = dims.iter().copied().max().map(|m| m + 1).unwrap_or(0) as usize;
    let mut writer = CacheWriter::create(dir, &hook, rows_from, provenance)?;
    writer.data = Some(table_path.display().to_string());
    let mut start = 0;
    while start < table.rows() {
        let mut end = start;
        while end < table.rows() && index[end] == index[start] {
            end += 1;
        }
        let mut row = vec![f32::NAN; width];
        for i in start..end {
            let d = dims[i];
            if d < 0 || d as usize >= width || !row[d as usize].is_nan() {
                return Err(GenolensError::Data {
                    path: table_path.to_path_buf(),
                    line: i + 1,
                    message: format!("sequence {} has dim {d} twice or out of range", ids[i]),
                });
            }
            row[d as usize] = values[i] as f32;
        }
        if row.iter().any(|v| v.is_nan()) {
            return Err(GenolensError::Data {
                path: table_path.to_path_buf(),
                line: start + 1,
                message: format!(
                    "sequence {} has {} of {width} dims (rows of one sequence must be together and complete)",
                    ids[start],
                    end - start
                ),
            });
        }
        let sequence = writer.add_sequence(&ids[start], labels[start].clone(), None)?;
        writer.push(&row, sequence, 0)?;
        start = end;
    }
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_round_trips_and_normalises_to_unit_mean_squared_norm() {
        let dir = tempfile::tempdir().unwrap();
        let provenance = Provenance::current(0);
        let mut writer =
            CacheWriter::create(dir.path(), "hook_cls", RowKind::None, &provenance).unwrap();
        writer.rows_per_shard = 3; // several shards
        let rows: Vec<Vec<f32>> = (0..7)
            .map(|i| vec![i as f32, 1.0 - i as f32, 2.0])
            .collect();
        for (i, row) in rows.iter().enumerate() {
            let s = writer
                .add_sequence(&format!("s{i}"), Some("1".into()), None)
                .unwrap();
            writer.push(row, s, 0).unwrap();
        }
        let cache = writer.finish().unwrap();
        assert_eq!(cache.meta.shards.len(), 3);
        let again = ActivationCache::open(dir.path()).unwrap();
        assert_eq!(again.meta.rows, 7);
        let all = again.all_rows().unwrap();
        assert_eq!(all.activations.to_vec2::<f32>().unwrap(), rows);
        assert_eq!(all.sequence, (0..7).collect::<Vec<u32>>());
        let mut squared = 0.0;
        for s in 0..again.shards() {
            squared += again
                .shard(s)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64;
        }
        assert!((squared / 7.0 - 1.0).abs() < 1e-5);
        assert_eq!(again.sequences().unwrap()[3].sequence_id, "s3");
    }

    #[test]
    fn a_cache_without_cache_json_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let err = ActivationCache::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("cache.json"), "{err}");
    }
}
