//! A fine-tuned model and the data it is scored on: the dataset its config.json records as its
//! training data (the default for `evaluate` and every study), and the check that a table's class
//! names are the model's (`id2label`), so that no model is silently scored on another task.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{GenolensError, Result};
use crate::model::load::sha256_file;
use crate::model::LoadedModel;
use crate::report::ParquetTable;

/// The dataset table `loaded` was fine-tuned on, if its config.json records one. A relative
/// path is looked up from the working directory, then from each folder above the model's (a
/// model under `data/models/` of a clone finds `data/…` of the same clone). A recorded file that
/// cannot be found is an error naming it; one whose bytes changed since training is a warning.
pub fn recorded_training_data(loaded: &LoadedModel) -> Result<Option<PathBuf>> {
    let Some(record) = loaded.model.config().training_data() else {
        return Ok(None);
    };
    let recorded = Path::new(&record.path);
    let candidates: Vec<PathBuf> = if recorded.is_absolute() {
        vec![recorded.to_path_buf()]
    } else {
        std::iter::once(recorded.to_path_buf())
            .chain(loaded.source.dir.ancestors().map(|dir| dir.join(recorded)))
            .collect()
    };
    let Some(found) = candidates.into_iter().find(|path| path.is_file()) else {
        return Err(GenolensError::Config {
            path: loaded.source.dir.join("config.json"),
            message: format!(
                "the model was fine-tuned on {} (genolens.training_data), which is not here \
                 (looked in the working directory and the folders above the model); give the \
                 dataset with --data",
                record.path
            ),
        });
    };
    if sha256_file(&found)? != record.sha256 {
        tracing::warn!(
            "{} differs from the file {} was fine-tuned on (sha256 {}): scores may include training rows",
            found.display(),
            loaded.source.id,
            record.sha256
        );
    }
    Ok(Some(found))
}

/// The data to score `loaded` on: `given` (the user's `--data`), else its recorded training
/// dataset, else `fallback`.
pub fn data_for_model(
    loaded: &LoadedModel,
    given: Option<&Path>,
    fallback: Option<&Path>,
) -> Result<Option<PathBuf>> {
    if let Some(given) = given {
        return Ok(Some(given.to_path_buf()));
    }
    if let Some(recorded) = recorded_training_data(loaded)? {
        return Ok(Some(recorded));
    }
    Ok(fallback.map(Path::to_path_buf))
}

/// Class names of a dataset table by label (`label` and `label_name` columns of a Parquet
/// table); `None` when the table does not name its classes.
pub fn table_class_names(table: &Path) -> Result<Option<BTreeMap<i64, String>>> {
    let columns = crate::data::table::column_names(table)?.unwrap_or_default();
    let is_parquet = table
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    if !is_parquet
        || !["label", "label_name"]
            .iter()
            .all(|c| columns.iter().any(|n| n == c))
    {
        return Ok(None);
    }
    let rows = ParquetTable::read(table)?;
    let labels = rows.integers("label")?;
    let names = rows.strings("label_name")?;
    let mut classes = BTreeMap::new();
    for (label, name) in labels.into_iter().zip(names) {
        classes.entry(label).or_insert(name);
    }
    Ok(Some(classes))
}

/// An error when `table` names its classes and they are not `loaded`'s `id2label` (the same
/// name for every label id), naming both; nothing to check when either side has no names.
pub fn check_class_names(loaded: &LoadedModel, table: &Path) -> Result<()> {
    check_model_classes(loaded.model.config(), &loaded.source.id, table)
}

/// [`check_class_names`] for a model known by its config and id.
pub fn check_model_classes(
    config: &crate::model::ModelConfig,
    model_id: &str,
    table: &Path,
) -> Result<()> {
    let Some(model_names) = config.class_names() else {
        return Ok(());
    };
    let Some(table_names) = table_class_names(table)? else {
        return Ok(());
    };
    let agrees = table_names.iter().all(|(label, name)| {
        usize::try_from(*label)
            .ok()
            .and_then(|l| model_names.get(l))
            .is_some_and(|model_name| model_name == name)
    });
    if agrees {
        return Ok(());
    }
    let table_list: Vec<String> = table_names
        .iter()
        .map(|(label, name)| format!("{label}: {name}"))
        .collect();
    let model_list: Vec<String> = model_names
        .iter()
        .enumerate()
        .map(|(label, name)| format!("{label}: {name}"))
        .collect();
    let hint = config
        .training_data()
        .map(|t| format!(" (it was fine-tuned on {})", t.path))
        .unwrap_or_default();
    Err(GenolensError::Data {
        path: table.to_path_buf(),
        line: 0,
        message: format!(
            "the table's classes {{{}}} (label: label_name) are not the classes of model {} \
             {{{}}} (config.json id2label){hint}: score a model on data of its own task",
            table_list.join(", "),
            model_id,
            model_list.join(", ")
        ),
    })
}
