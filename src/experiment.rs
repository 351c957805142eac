//! The experiment runner: output folder, seed, device, provenance, tables and run.json.

use std::path::{Path, PathBuf};

use candle_core::Device;

use crate::data::{open_sequences, Example, TableColumns};
use crate::defaults;
use crate::error::{GenolensError, Result};
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
    /// Which rows of a table with a `split` column to use (`all` for every row); default
    /// [`crate::defaults::SPLIT`].
    pub split: Option<String>,
    /// Use only the first N sequences (after the split filter).
    pub limit: Option<usize>,
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

    /// The sequences a study runs on: `--data` (or `default`), recorded like [`Self::data_file`];
    /// from a table with a `split` column only the rows of `--split` (default
    /// [`crate::defaults::SPLIT`]; `all` keeps every row); then the first `--limit`. A table's
    /// `label` column becomes each example's label. Split and limit go into run.json.
    pub fn sequences(&mut self, default: &Path) -> Result<Vec<Example>> {
        let path = self.data_file(default)?;
        let columns = crate::data::table::column_names(&path)?.unwrap_or_default();
        let has = |name: &str| columns.iter().any(|c| c == name);
        let read = |label: Option<&str>| -> Result<Vec<Example>> {
            let columns = TableColumns {
                label: label.map(str::to_string),
                ..Default::default()
            };
            open_sequences(&path, &columns)?.collect()
        };
        let mut examples = read(has("label").then_some("label"))?;
        let split = match (&self.settings.split, has("split")) {
            (Some(all), _) if all == "all" => "all".to_string(),
            (Some(split), false) => {
                return Err(GenolensError::Data {
                    path: path.clone(),
                    line: 0,
                    message: format!("--split {split} needs a table with a `split` column"),
                })
            }
            (None, false) => "all".to_string(),
            (split, true) => split.clone().unwrap_or_else(|| defaults::SPLIT.to_string()),
        };
        if split != "all" {
            let splits: Vec<String> = read(Some("split"))?
                .into_iter()
                .map(|e| e.label.unwrap_or_default())
                .collect();
            let mut names: Vec<&String> = splits.iter().collect();
            names.sort();
            names.dedup();
            let names = names
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            examples = examples
                .into_iter()
                .zip(&splits)
                .filter(|(_, s)| **s == split)
                .map(|(e, _)| e)
                .collect();
            if examples.is_empty() {
                return Err(GenolensError::Data {
                    path: path.clone(),
                    line: 0,
                    message: format!("no rows in split {split:?} (the table has: {names})"),
                });
            }
        }
        if let Some(limit) = self.settings.limit {
            examples.truncate(limit);
        }
        self.set_config("split", split);
        self.set_config("limit", self.settings.limit);
        self.set_config("sequences", examples.len());
        Ok(examples)
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
