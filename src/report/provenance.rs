//! What produced a result: code version, command, seed, model and data checksums.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::load::sha256_file;

/// An input data file and its checksum.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DataFile {
    /// Path as given.
    pub path: String,
    /// sha256 (hex).
    pub sha256: String,
}

/// Provenance written into every Parquet file (key-value metadata) and run.json. It holds no
/// wall-clock time, so the same run twice gives byte-identical tables.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Provenance {
    /// Crate version.
    pub genolens_version: String,
    /// Git commit the binary was built from (`unknown` outside a checkout).
    pub git_commit: String,
    /// argv of the producing process.
    pub command_line: Vec<String>,
    /// The run's seed.
    pub seed: u64,
    /// Model folder or hub id.
    pub model_id: Option<String>,
    /// sha256 of the model weights file.
    pub model_sha256: Option<String>,
    /// Input data files with checksums.
    pub data: Vec<DataFile>,
    /// What ran the CPU's matrix products: the built-in `gemm` crate or the BLAS library
    /// `GENOLENS_BLAS` named (results agree to rounding, not bit for bit, across backends).
    #[serde(default)]
    pub matmul: String,
}

impl Provenance {
    /// Provenance of this process with the given seed.
    pub fn current(seed: u64) -> Self {
        Provenance {
            genolens_version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: env!("GENOLENS_GIT_COMMIT").to_string(),
            command_line: std::env::args().collect(),
            seed,
            model_id: None,
            model_sha256: None,
            data: Vec::new(),
            matmul: crate::ops::check_backend().unwrap_or_else(|message| message),
        }
    }

    /// Provenance of a derived dataset: its sources and seed, and no commit or command line, so
    /// `genolens data build` from any checkout gives byte-identical files.
    pub fn for_dataset(seed: u64, sources: Vec<DataFile>) -> Self {
        Provenance {
            genolens_version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: String::new(),
            command_line: vec!["genolens".into(), "data".into(), "build".into()],
            seed,
            model_id: None,
            model_sha256: None,
            data: sources,
            matmul: String::new(),
        }
    }

    /// Records the model.
    pub fn with_model(mut self, source: &crate::model::ModelSource) -> Self {
        self.model_id = Some(source.id.clone());
        self.model_sha256 = Some(source.weights_sha256.clone());
        self
    }

    /// Records a data file (hashing it).
    pub fn with_data_file(mut self, path: &Path) -> Result<Self> {
        self.data.push(DataFile {
            path: path.display().to_string(),
            sha256: sha256_file(path)?,
        });
        Ok(self)
    }

    /// Key-value pairs for Parquet metadata (`genolens.*`, plus the whole record as JSON).
    pub fn key_values(&self) -> Vec<(String, String)> {
        let data_sha256 = self
            .data
            .iter()
            .map(|d| d.sha256.as_str())
            .collect::<Vec<_>>()
            .join(",");
        vec![
            ("genolens.version".into(), self.genolens_version.clone()),
            ("genolens.git_commit".into(), self.git_commit.clone()),
            ("genolens.command_line".into(), self.command_line.join(" ")),
            ("genolens.seed".into(), self.seed.to_string()),
            (
                "genolens.model_id".into(),
                self.model_id.clone().unwrap_or_default(),
            ),
            (
                "genolens.model_sha256".into(),
                self.model_sha256.clone().unwrap_or_default(),
            ),
            ("genolens.data_sha256".into(), data_sha256),
            ("genolens.matmul".into(), self.matmul.clone()),
            (
                "genolens.provenance".into(),
                serde_json::to_string(self).expect("provenance serialises"),
            ),
        ]
    }
}

/// The run.json of an output folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// Provenance.
    #[serde(flatten)]
    pub provenance: Provenance,
    /// The command or experiment name.
    pub command: String,
    /// Its settings.
    pub config: serde_json::Value,
    /// RFC 3339 UTC start time.
    pub started_at: String,
    /// RFC 3339 UTC end time.
    pub finished_at: String,
    /// Files written, relative to the output folder.
    pub outputs: Vec<String>,
}

impl RunRecord {
    /// Writes `run.json` into `dir` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        self.write_as(&dir.join("run.json"))
    }

    /// Writes the record to `path` atomically (shards write `run.part-<i>-of-<n>.json`).
    pub fn write_as(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("run record serialises");
        crate::report::write_atomic(path, text.as_bytes())
    }

    /// Reads a record written by [`write_as`](Self::write_as).
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| crate::GenolensError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| crate::GenolensError::Data {
            path: path.to_path_buf(),
            line: e.line(),
            message: format!("not a genolens run record: {e}"),
        })
    }
}

/// Current UTC time as RFC 3339 (seconds).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
