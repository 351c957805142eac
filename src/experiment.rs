//! The experiment runner: output folder, seed, device, provenance, tables and run.json.

use std::path::{Path, PathBuf};

use candle_core::Device;

use crate::error::Result;
use crate::model::{LoadOptions, LoadedModel};
use crate::report::provenance::now_rfc3339;
use crate::report::{Provenance, RunRecord, TableRow, TableWriter};

/// A study in experiments/*.rs: `pub const DESCRIPTION: &str` and `pub fn run(&mut ExperimentContext)`.
pub struct Experiment {
    /// Name (the file name with `-` for `_`).
    pub name: &'static str,
    /// One line shown by `genolens experiment --list`.
    pub description: &'static str,
    /// The study.
    pub run: fn(&mut ExperimentContext) -> anyhow::Result<()>,
}

/// Settings of one experiment run.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Root of all outputs (default `reports`).
    pub reports_root: PathBuf,
    /// Run id (default: UTC start time + seed).
    pub run_id: Option<String>,
    /// Seed for every random choice.
    pub seed: u64,
    /// Where to compute.
    pub device: Device,
    /// Model override (folder or hub id) for experiments that accept one.
    pub model: Option<String>,
    /// Data override for experiments that accept one.
    pub data: Option<PathBuf>,
}

/// What an experiment sees: where to write, which seed and device, and provenance bookkeeping.
pub struct ExperimentContext {
    /// Experiment name.
    pub name: String,
    /// Output folder `reports/<name>/<run-id>/`.
    pub out_dir: PathBuf,
    /// Seed.
    pub seed: u64,
    /// Device.
    pub device: Device,
    /// Provenance of the run so far (model and data are added as they are loaded).
    pub provenance: Provenance,
    settings: RunSettings,
    config: serde_json::Map<String, serde_json::Value>,
    outputs: Vec<String>,
    started_at: String,
}

impl ExperimentContext {
    /// Prepares the output folder of a run.
    pub fn new(name: &str, settings: RunSettings) -> Result<Self> {
        let run_id = settings.run_id.clone().unwrap_or_else(|| {
            let stamp: String = now_rfc3339()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect();
            format!("{stamp}-seed{}", settings.seed)
        });
        let out_dir = settings.reports_root.join(name).join(run_id);
        std::fs::create_dir_all(&out_dir).map_err(|e| crate::GenolensError::io(&out_dir, e))?;
        Ok(ExperimentContext {
            name: name.to_string(),
            out_dir,
            seed: settings.seed,
            device: settings.device.clone(),
            provenance: Provenance::current(settings.seed),
            settings,
            config: serde_json::Map::new(),
            outputs: Vec::new(),
            started_at: now_rfc3339(),
        })
    }

    /// Loads the user's `--model`, or `default`, and records it in the provenance.
    pub fn load_model(&mut self, default: &str) -> Result<LoadedModel> {
        let id = self
            .settings
            .model
            .clone()
            .unwrap_or_else(|| default.to_string());
        let options = LoadOptions {
            device: self.device.clone(),
            ..Default::default()
        };
        let loaded = crate::model::load(&id, &options)?;
        self.provenance = self.provenance.clone().with_model(&loaded.source);
        self.set_config("model", id);
        Ok(loaded)
    }

    /// The user's `--data`, or `default`, recorded (with its sha256) in the provenance.
    pub fn data_file(&mut self, default: &Path) -> Result<PathBuf> {
        let path = self
            .settings
            .data
            .clone()
            .unwrap_or_else(|| default.to_path_buf());
        self.provenance = self.provenance.clone().with_data_file(&path)?;
        self.set_config("data", path.display().to_string());
        Ok(path)
    }

    /// Records a setting in run.json.
    pub fn set_config(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.config.insert(key.to_string(), value.into());
    }

    /// A Parquet table `<out_dir>/<name>.parquet` carrying the current provenance.
    pub fn table<R: TableRow>(&mut self, name: &str) -> Result<TableWriter<R>> {
        let file = format!("{name}.parquet");
        self.outputs.push(file.clone());
        TableWriter::create(&self.out_dir.join(file), &self.provenance)
    }

    /// Writes run.json; returns the output folder.
    pub fn finish(self) -> Result<PathBuf> {
        let record = RunRecord {
            provenance: self.provenance,
            command: format!("experiment {}", self.name),
            config: serde_json::Value::Object(self.config),
            started_at: self.started_at,
            finished_at: now_rfc3339(),
            outputs: self.outputs,
        };
        record.write(&self.out_dir)?;
        Ok(self.out_dir)
    }
}
