//! The experiment runner: output folder, seed, device, provenance, tables, shards, and the reduce
//! step that turns a study's per-observation tables into statistics, figures and report.html.
//!
//! A study is two functions: `run` maps sequences to per-observation rows (it is what a shard
//! runs), and `reduce` reads those rows back from Parquet and writes summaries, `figures/*.svg`
//! and the report. An unsharded run calls both; `genolens merge` concatenates the shards' parts
//! and calls `reduce` once, so a sharded study ends with the same folder as an unsharded one.

use std::path::{Path, PathBuf};

use candle_core::Device;

use crate::analysis::BatchOptions;
use crate::data::{open_sequences, Example, TableColumns};
use crate::defaults;
use crate::error::{GenolensError, Result};
use crate::model::{LoadOptions, LoadedModel};
use crate::report::provenance::now_rfc3339;
use crate::report::{
    concatenate_parquet, write_atomic, ParquetTable, Provenance, Report, RunRecord, TableRow,
    TableWriter,
};

/// A study's map step (sequences → per-observation tables).
pub type RunFn = fn(&mut ExperimentContext) -> anyhow::Result<()>;
/// A study's reduce step (tables → statistics, figures, report).
pub type ReduceFn = fn(&mut ReduceContext) -> anyhow::Result<()>;

/// A study in experiments/*.rs: `pub const DESCRIPTION: &str`, `pub fn run(&mut
/// ExperimentContext)` and optionally `pub fn reduce(&mut ReduceContext)`.
pub struct Experiment {
    /// Name (the file name with `-` for `_`).
    pub name: &'static str,
    /// One line shown by `genolens experiment --list`.
    pub description: &'static str,
    /// The map step.
    pub run: RunFn,
    /// The reduce step, if the study has one.
    pub reduce: Option<ReduceFn>,
}

/// One part of a run split into `count` independent jobs: part `index` (0-based, as Slurm's
/// `$SLURM_ARRAY_TASK_ID` with `--array=0-(n-1)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based part.
    pub index: usize,
    /// Number of parts.
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = GenolensError;

    fn from_str(text: &str) -> Result<Self> {
        let bad = |why: &str| {
            GenolensError::argument(
                format!("--shard {text}"),
                format!("{why}; expected i/n with 0 <= i < n, e.g. --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT"),
            )
        };
        let (index, count) = text.split_once('/').ok_or_else(|| bad("no '/'"))?;
        let index: usize = index.trim().parse().map_err(|_| bad("i is not a number"))?;
        let count: usize = count.trim().parse().map_err(|_| bad("n is not a number"))?;
        if count == 0 || index >= count {
            return Err(bad("i out of range"));
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// `part-<i>-of-<n>`.
    pub fn part_name(self) -> String {
        format!("part-{}-of-{}", self.index, self.count)
    }

    /// This part's share of `total` items, in whole blocks of `block` items so that every block
    /// (one read-ahead of the batched runner) is batched exactly as in the unsharded run.
    pub fn range(self, total: usize, block: usize) -> std::ops::Range<usize> {
        let blocks = total.div_ceil(block.max(1));
        let first = blocks * self.index / self.count;
        let last = blocks * (self.index + 1) / self.count;
        (first * block).min(total)..(last * block).min(total)
    }
}

/// Settings of one experiment run.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Root of all outputs (default `reports`).
    pub reports_root: PathBuf,
    /// Run id (default: UTC start time + seed; required with `shard`).
    pub run_id: Option<String>,
    /// Seed for every random choice.
    pub seed: u64,
    /// Where to compute.
    pub device: Device,
    /// DNABERT's pretraining-time MLM logits (output bias added twice) for every model loaded.
    pub legacy_double_bias: bool,
    /// Model override (folder or hub id) for experiments that accept one.
    pub model: Option<String>,
    /// Data override for experiments that accept one.
    pub data: Option<PathBuf>,
    /// Which rows of a table with a `split` column to use (`all` for every row); default
    /// [`crate::defaults::SPLIT`].
    pub split: Option<String>,
    /// Use only the first N sequences (after the split filter).
    pub limit: Option<usize>,
    /// Sequences per forward pass (default 16).
    pub batch_size: usize,
    /// Run only this part of the sequences.
    pub shard: Option<Shard>,
    /// Write into this folder instead of `<reports_root>/<name>/<run-id>` (commands such as
    /// `genolens patch --out DIR`).
    pub out_dir: Option<PathBuf>,
    /// The command recorded in run.json (default `experiment <name>`).
    pub command: Option<String>,
}

impl RunSettings {
    /// Defaults: reports/, seed 0, CPU, the experiment's own model and data, batch size 16.
    pub fn new(reports_root: impl Into<PathBuf>) -> Self {
        RunSettings {
            reports_root: reports_root.into(),
            run_id: None,
            seed: 0,
            device: Device::Cpu,
            legacy_double_bias: false,
            model: None,
            data: None,
            split: None,
            limit: None,
            batch_size: 16,
            shard: None,
            out_dir: None,
            command: None,
        }
    }
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
    /// The loaded model's config, id and recorded training data (for the data default and the
    /// class-name check).
    model: Option<(crate::model::ModelConfig, String, Option<PathBuf>)>,
}

impl ExperimentContext {
    /// Prepares the output folder of a run.
    pub fn new(name: &str, settings: RunSettings) -> Result<Self> {
        if settings.batch_size == 0 {
            return Err(GenolensError::argument(
                "--batch-size",
                "must be at least 1",
            ));
        }
        if settings.limit == Some(0) {
            return Err(GenolensError::argument(
                "--limit 0",
                "must be at least 1 (leave --limit out to use every sequence)",
            ));
        }
        let run_id = match (&settings.run_id, settings.shard) {
            (Some(id), _) => id.clone(),
            (None, Some(shard)) => {
                return Err(GenolensError::argument(
                    format!("--shard {shard}"),
                    "shards of one run must share a folder: give --run-id (e.g. --run-id $SLURM_ARRAY_JOB_ID)",
                ))
            }
            (None, None) => {
                let stamp: String = now_rfc3339()
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric())
                    .collect();
                format!("{stamp}-seed{}", settings.seed)
            }
        };
        let out_dir = settings
            .out_dir
            .clone()
            .unwrap_or_else(|| settings.reports_root.join(name).join(run_id));
        match settings.shard {
            None => crate::interrupt::prepare_run_dir(&out_dir, "run.json", |_| true)?,
            Some(shard) => {
                let part = shard.part_name();
                crate::interrupt::prepare_run_dir(&out_dir, &format!("run.{part}.json"), |name| {
                    name.contains(&part)
                })?
            }
        };
        std::fs::create_dir_all(&out_dir).map_err(|e| crate::GenolensError::io(&out_dir, e))?;
        let mut config = serde_json::Map::new();
        config.insert("batch_size".into(), settings.batch_size.into());
        Ok(ExperimentContext {
            name: name.to_string(),
            out_dir,
            seed: settings.seed,
            device: settings.device.clone(),
            provenance: Provenance::current(settings.seed),
            settings,
            config,
            outputs: Vec::new(),
            started_at: now_rfc3339(),
            model: None,
        })
    }

    /// Loads the user's `--model`, or `default`, and records it in the provenance.
    pub fn load_model(&mut self, default: &str) -> Result<LoadedModel> {
        self.load_model_with_head(default, None)
    }

    /// [`load_model`](Self::load_model) forcing a head: `Some(HeadKind::Encoder { pooler: false })`
    /// drops an MLM decoder a study does not read (patching the [CLS] vector of an MLM).
    pub fn load_model_with_head(
        &mut self,
        default: &str,
        head: Option<crate::model::HeadKind>,
    ) -> Result<LoadedModel> {
        let id = self
            .settings
            .model
            .clone()
            .unwrap_or_else(|| default.to_string());
        let options = LoadOptions {
            device: self.device.clone(),
            head,
            legacy_double_bias: self.settings.legacy_double_bias,
        };
        let loaded = crate::model::load(&id, &options)?;
        self.provenance = self.provenance.clone().with_model(&loaded.source);
        // A study over several models (one per dataset) lists them all; `model` is the last.
        let entry = serde_json::json!({
            "id": loaded.source.id.clone(),
            "sha256": loaded.source.weights_sha256.clone(),
        });
        let mut models = match self.config.get("models") {
            Some(serde_json::Value::Array(list)) => list.clone(),
            _ => Vec::new(),
        };
        if !models.contains(&entry) {
            models.push(entry);
        }
        self.set_config("models", models);
        self.set_config("model", id);
        if self.settings.legacy_double_bias {
            self.set_config("legacy_double_bias", true);
        }
        let training_data = crate::datasets::model_data::recorded_training_data(&loaded)?;
        self.model = Some((
            loaded.model.config().clone(),
            loaded.source.id.clone(),
            training_data,
        ));
        Ok(loaded)
    }

    /// The user's `--data`; else, for a fine-tuned model loaded with
    /// [`load_model`](Self::load_model), the dataset it was fine-tuned on (its config.json's
    /// `genolens.training_data`); else `default`. Recorded (with its sha256) in the provenance.
    /// A table whose class names (`label`, `label_name`) differ from the loaded model's
    /// `id2label` is an error naming both.
    pub fn data_file(&mut self, default: &Path) -> Result<PathBuf> {
        let recorded = self.model.as_ref().and_then(|(_, _, data)| data.clone());
        let path = self
            .settings
            .data
            .clone()
            .or(recorded)
            .unwrap_or_else(|| default.to_path_buf());
        if let Some((config, id, _)) = &self.model {
            crate::datasets::model_data::check_model_classes(config, id, &path)?;
        }
        self.provenance = self.provenance.clone().with_data_file(&path)?;
        self.set_config("data", path.display().to_string());
        Ok(path)
    }

    /// How the batched runner should batch: `--batch-size` sequences per pass and a progress
    /// bar labelled `message`. Shards are cut in whole read-aheads of these options, so use them
    /// for the sequences [`sequences`](Self::sequences) returns.
    pub fn batch_options(&self, message: &str) -> BatchOptions {
        BatchOptions::with_progress(self.settings.batch_size, message)
    }

    /// The sequences a study runs on: `--data` (or `default`), recorded like [`Self::data_file`];
    /// from a table with a `split` column only the rows of `--split` (default
    /// [`crate::defaults::SPLIT`]; `all` keeps every row); then the first `--limit`; then, with
    /// `--shard i/n`, part i of n (contiguous, in whole read-aheads of the runner, so the parts
    /// concatenate to the unsharded order and batch identically). A table's `label` column
    /// becomes each example's label. Split, limit and shard go into run.json.
    pub fn sequences(&mut self, default: &Path) -> Result<Vec<Example>> {
        self.sequences_where(default, |_| true)
    }

    /// [`sequences`](Self::sequences) keeping only the examples `keep` accepts, before the
    /// limit and the shard are taken (`--limit 10` gives ten of the kept sequences). An empty
    /// result is not an error here.
    pub fn sequences_where(
        &mut self,
        default: &Path,
        keep: impl Fn(&Example) -> bool,
    ) -> Result<Vec<Example>> {
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
        self.set_config("split", split);
        examples.retain(|e| keep(e));
        let options = self.batch_options("");
        Ok(self.take_part(examples, options.batch_size * options.read_ahead))
    }

    /// True when this run is one shard of several (`--shard i/n`).
    pub fn is_shard(&self) -> bool {
        self.settings.shard.is_some()
    }

    /// A study's default number of sequences, used when the user gave no `--limit` (applied
    /// like `--limit`: before sharding, and recorded as `limit` in run.json).
    pub fn set_default_limit(&mut self, sequences: usize) {
        if self.settings.limit.is_none() {
            self.settings.limit = Some(sequences);
            self.set_config("default_sequences", sequences);
        }
    }

    /// Takes the user's `--limit` for the study to apply its own way (faithfulness reads it as
    /// sequences per class): later calls to [`sequences`](Self::sequences) are not limited.
    pub fn take_limit(&mut self) -> Option<usize> {
        self.settings.limit.take()
    }

    /// Whether the user gave `--model` or `--data` (a study over several default datasets then
    /// runs the user's one alone).
    pub fn overrides_model_or_data(&self) -> bool {
        self.settings.model.is_some() || self.settings.data.is_some()
    }

    /// The user's `--limit`, if any.
    pub fn limit(&self) -> Option<usize> {
        self.settings.limit
    }

    /// The `--split` a study should read (`all` for every row; default
    /// [`crate::defaults::SPLIT`]).
    pub fn split(&self) -> String {
        self.settings
            .split
            .clone()
            .unwrap_or_else(|| defaults::SPLIT.to_string())
    }

    /// The first `--limit` of `items`, then with `--shard i/n` part i of n, cut in whole blocks
    /// of `block` items (use 1 when each item is processed alone, the batched runner's
    /// `batch_size × read_ahead` when items are batched together), so the parts concatenate to
    /// the unsharded order. Limit, shard and counts go into run.json (`sequences` = this part's).
    pub fn take_part<T>(&mut self, mut items: Vec<T>, block: usize) -> Vec<T> {
        if let Some(limit) = self.settings.limit {
            items.truncate(limit);
        }
        self.set_config("limit", self.settings.limit);
        self.set_config("sequences_total", items.len());
        if let Some(shard) = self.settings.shard {
            let range = shard.range(items.len(), block);
            self.set_config("shard", shard.to_string());
            self.set_config("shard_first_sequence", range.start);
            items = items.drain(range).collect();
        }
        self.set_config("sequences", items.len());
        items
    }

    /// Records a setting in run.json.
    pub fn set_config(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.config.insert(key.to_string(), value.into());
    }

    /// A setting recorded so far with [`set_config`](Self::set_config) (or by loading data).
    pub fn config_value(&self, key: &str) -> Option<serde_json::Value> {
        self.config.get(key).cloned()
    }

    /// A per-observation Parquet table carrying the current provenance: `<out_dir>/<name>.parquet`,
    /// or `<out_dir>/<name>/part-<i>-of-<n>.parquet` in a sharded run (pandas, pyarrow and
    /// DuckDB read such a folder as one table; `genolens merge` writes `<name>.parquet`).
    pub fn table<R: TableRow>(&mut self, name: &str) -> Result<TableWriter<R>> {
        let file = match self.settings.shard {
            Some(shard) => format!("{name}/{}.parquet", shard.part_name()),
            None => format!("{name}.parquet"),
        };
        let path = self.out_dir.join(&file);
        self.outputs.push(file);
        TableWriter::create(&path, &self.provenance)
    }

    /// Ends the run. Unsharded: runs `reduce` (statistics, figures, report.html) and writes
    /// run.json. A shard: writes `run.part-<i>-of-<n>.json` and leaves the reduce step to
    /// `genolens merge`. Returns the output folder.
    pub fn finish(self, reduce: Option<ReduceFn>) -> Result<PathBuf> {
        let record = RunRecord {
            provenance: self.provenance,
            command: self
                .settings
                .command
                .clone()
                .unwrap_or_else(|| format!("experiment {}", self.name)),
            config: serde_json::Value::Object(self.config),
            started_at: self.started_at,
            finished_at: now_rfc3339(),
            outputs: self.outputs,
        };
        match self.settings.shard {
            Some(shard) => {
                record.write_as(&self.out_dir.join(format!("run.{}.json", shard.part_name())))?;
            }
            None => reduce_run(&self.out_dir, record, reduce)?,
        }
        Ok(self.out_dir)
    }
}

/// What a study's reduce step sees: the run folder with its per-observation tables, the run's
/// settings, and the report being built.
pub struct ReduceContext {
    /// The run folder.
    pub out_dir: PathBuf,
    /// The run's provenance (for summary tables).
    pub provenance: Provenance,
    config: serde_json::Value,
    outputs: Vec<String>,
    report: Report,
}

impl ReduceContext {
    /// A per-observation table of this run (`<out_dir>/<name>.parquet`), read whole.
    pub fn read_table(&self, name: &str) -> Result<ParquetTable> {
        ParquetTable::read(&self.out_dir.join(format!("{name}.parquet")))
    }

    /// A setting the run recorded (`batch_size`, `model`, `sequences`, ...).
    pub fn config(&self, key: &str) -> Option<&serde_json::Value> {
        self.config.get(key)
    }

    /// A summary table `<out_dir>/<name>.parquet` with the run's provenance.
    pub fn table<R: TableRow>(&mut self, name: &str) -> Result<TableWriter<R>> {
        let file = format!("{name}.parquet");
        let path = self.out_dir.join(&file);
        self.outputs.push(file);
        TableWriter::create(&path, &self.provenance)
    }

    /// Writes `figures/<file>` and shows it in the report with `caption`.
    pub fn figure(&mut self, file: &str, svg: &str, caption: &str) -> Result<()> {
        write_atomic(&self.out_dir.join("figures").join(file), svg.as_bytes())?;
        self.outputs.push(format!("figures/{file}"));
        self.report.figure(file, svg, caption);
        Ok(())
    }

    /// The report being built (headings, paragraphs, tables; figures via [`figure`](Self::figure)).
    pub fn report(&mut self) -> &mut Report {
        &mut self.report
    }

    /// Replaces the report's title and opening summary.
    pub fn set_title(&mut self, title: &str, summary: &str) {
        self.report.set_title(title, summary);
    }
}

/// Runs `reduce` over a finished run folder, then writes report.html and run.json.
fn reduce_run(out_dir: &Path, mut record: RunRecord, reduce: Option<ReduceFn>) -> Result<()> {
    let mut context = ReduceContext {
        out_dir: out_dir.to_path_buf(),
        provenance: record.provenance.clone(),
        config: record.config.clone(),
        outputs: Vec::new(),
        report: Report::new(&record.command, ""),
    };
    if let Some(reduce) = reduce {
        reduce(&mut context)
            .map_err(|e| GenolensError::argument("reduce step", format!("{e:#}")))?;
    }
    record.outputs.extend(context.outputs);
    record.outputs.push("report.html".into());
    record.finished_at = now_rfc3339();
    write_atomic(
        &out_dir.join("report.html"),
        context.report.render(&record).as_bytes(),
    )?;
    record.write(out_dir)
}

/// `genolens merge RUN_DIR`: checks every shard of a run finished, concatenates each table's
/// parts in shard order into `<table>.parquet`, and runs the study's reduce step (statistics,
/// figures, report.html, run.json). The parts stay where they are. Returns the study's name.
pub fn merge(run_dir: &Path, experiments: &[Experiment]) -> Result<String> {
    let entries = std::fs::read_dir(run_dir).map_err(|e| GenolensError::io(run_dir, e))?;
    let mut parts: Vec<(Shard, PathBuf)> = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| GenolensError::io(run_dir, e))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let Some(spec) = name
            .strip_prefix("run.part-")
            .and_then(|rest| rest.strip_suffix(".json"))
        else {
            continue;
        };
        let shard =
            spec.replace("-of-", "/")
                .parse::<Shard>()
                .map_err(|_| GenolensError::Data {
                    path: path.clone(),
                    line: 0,
                    message: "not a shard record name (run.part-<i>-of-<n>.json)".into(),
                })?;
        parts.push((shard, path));
    }
    parts.sort_by_key(|(shard, _)| (shard.count, shard.index));
    let Some(&(first, _)) = parts.first() else {
        return Err(GenolensError::Data {
            path: run_dir.to_path_buf(),
            line: 0,
            message:
                "no shard records (run.part-<i>-of-<n>.json): was this run started with --shard?"
                    .into(),
        });
    };
    let count = first.count;
    if let Some((other, path)) = parts.iter().find(|(s, _)| s.count != count) {
        return Err(GenolensError::Data {
            path: path.clone(),
            line: 0,
            message: format!(
                "a run split into {} parts next to one split into {count}",
                other.count
            ),
        });
    }
    let missing: Vec<String> = (0..count)
        .filter(|i| !parts.iter().any(|(s, _)| s.index == *i))
        .map(|i| i.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(GenolensError::Data {
            path: run_dir.to_path_buf(),
            line: 0,
            message: format!(
                "shards {} of {count} have not finished (no run.part-<i>-of-{count}.json); rerun them, then merge",
                missing.join(", ")
            ),
        });
    }
    let records = parts
        .iter()
        .map(|(_, path)| RunRecord::read(path))
        .collect::<Result<Vec<_>>>()?;
    let name = records[0]
        .command
        .strip_prefix("experiment ")
        .unwrap_or(&records[0].command)
        .to_string();
    let experiment =
        experiments
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| GenolensError::Data {
                path: parts[0].1.clone(),
                line: 0,
                message: format!(
                    "the run is of experiment {name:?}, which this genolens does not have"
                ),
            })?;
    // Tables by name, each part's file in shard order.
    let mut tables: Vec<String> = Vec::new();
    for output in &records[0].outputs {
        if let Some((table, _)) = output.split_once('/') {
            tables.push(table.to_string());
        }
    }
    let mut outputs = Vec::new();
    for table in &tables {
        let files: Vec<PathBuf> = (0..count)
            .map(|index| {
                run_dir
                    .join(table)
                    .join(format!("{}.parquet", Shard { index, count }.part_name()))
            })
            .collect();
        if let Some(absent) = files.iter().find(|f| !f.is_file()) {
            return Err(GenolensError::MissingFile {
                dir: run_dir.display().to_string(),
                file: absent
                    .strip_prefix(run_dir)
                    .unwrap_or(absent)
                    .display()
                    .to_string(),
                hint: "a shard's table (did that shard fail?)".into(),
            });
        }
        let file = format!("{table}.parquet");
        concatenate_parquet(&files, &run_dir.join(&file), &["genolens.command_line"])?;
        outputs.push(file);
    }
    let mut config = records[0].config.clone();
    if let serde_json::Value::Object(map) = &mut config {
        for key in ["shard", "shard_first_sequence"] {
            map.remove(key);
        }
        let sequences: u64 = records
            .iter()
            .filter_map(|r| r.config.get("sequences").and_then(|v| v.as_u64()))
            .sum();
        map.insert("sequences".into(), sequences.into());
        map.insert("merged_shards".into(), count.into());
    }
    let record = RunRecord {
        provenance: records[0].provenance.clone(),
        command: records[0].command.clone(),
        config,
        started_at: records
            .iter()
            .map(|r| r.started_at.clone())
            .min()
            .unwrap_or_default(),
        finished_at: now_rfc3339(),
        outputs,
    };
    reduce_run(run_dir, record, experiment.reduce)?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_cover_every_block_once() {
        assert_eq!(
            "2/5".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 5 }
        );
        for bad in ["5/5", "1", "a/2", "0/0", "-1/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        for (total, block, count) in [
            (0, 4, 3),
            (10, 4, 3),
            (96, 32, 3),
            (1000, 256, 7),
            (5, 1, 8),
        ] {
            let mut next = 0;
            for index in 0..count {
                let range = Shard { index, count }.range(total, block);
                assert_eq!(range.start, next, "{total} {block} {count}");
                assert!(range.start % block == 0 || range.start == total);
                next = range.end;
            }
            assert_eq!(next, total);
        }
    }
}
