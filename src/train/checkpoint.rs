//! Trained models in the Hugging Face layout (config.json, vocab.txt, model.safetensors), which
//! both the genolens loader and `transformers` read, plus the optimiser state a resume needs.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{GenolensError, Result};
use crate::model::HookedModel;
use crate::tokenize::vocab::KmerVocab;
use crate::train::adamw::AdamW;

/// Where a run stands, saved beside its checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainerState {
    /// Optimiser updates done.
    pub step: usize,
    /// Total steps planned.
    pub total_steps: usize,
    /// The run's seed.
    pub seed: u64,
    /// Seconds of training so far (over every resumed part).
    pub wall_seconds: f64,
}

/// Writes the model as an HF folder (tied MLM decoder omitted, as `save_pretrained` does).
/// `labels` names the classes of a classifier (config.json `id2label`).
pub fn save_model(
    dir: &Path,
    model: &HookedModel,
    vocab: &KmerVocab,
    labels: Option<&[String]>,
) -> Result<()> {
    save_model_as(dir, model, vocab, labels, DType::F32)
}

/// [`save_model`] with the weights stored as `dtype` (f16 halves a committed model; the loader
/// computes in f32 whatever the stored type).
pub fn save_model_as(
    dir: &Path,
    model: &HookedModel,
    vocab: &KmerVocab,
    labels: Option<&[String]>,
    dtype: DType,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| GenolensError::io(dir, e))?;
    let mut config = model.config().clone();
    config.architectures = Some(vec![model.head_kind().hf_class().to_string()]);
    if let Some(labels) = labels {
        config.set_class_names(labels);
    }
    let parameters = model.named_parameters();
    let word = parameters
        .get("bert.embeddings.word_embeddings.weight")
        .map(|t| t.id());
    if let Some(decoder) = parameters.get("cls.predictions.decoder.weight") {
        // An untied decoder must say so, or transformers < 5 would overwrite it on load.
        config.tie_word_embeddings = (Some(decoder.id()) != word).then_some(false);
    }
    let tensors: HashMap<String, Tensor> = parameters
        .iter()
        .filter(|(name, tensor)| {
            !(name.as_str() == "cls.predictions.decoder.weight" && Some(tensor.id()) == word)
        })
        .map(|(name, tensor)| Ok((name.clone(), tensor.to_dtype(dtype)?)))
        .collect::<Result<_>>()?;
    write_safetensors(&dir.join("model.safetensors"), &tensors)?;
    crate::report::write_atomic(&dir.join("config.json"), config.to_json().as_bytes())?;
    crate::report::write_atomic(&dir.join("vocab.txt"), vocab.to_file_text().as_bytes())
}

/// Writes tensors to a safetensors file atomically.
pub fn write_safetensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let temp = crate::report::atomic::temp_path(path);
    candle_core::safetensors::save(tensors, &temp)?;
    std::fs::rename(&temp, path).map_err(|e| GenolensError::io(path, e))
}

/// Saves the optimiser moments and the trainer state into `dir` (next to the model files).
pub fn save_training_state(dir: &Path, optimiser: &AdamW, state: &TrainerState) -> Result<()> {
    let moments: HashMap<String, Tensor> = optimiser.state()?.into_iter().collect();
    write_safetensors(&dir.join("optimizer.safetensors"), &moments)?;
    let text = serde_json::to_string_pretty(state).expect("state serialises");
    crate::report::write_atomic(&dir.join("trainer_state.json"), text.as_bytes())
}

/// Reads a trainer state and optimiser moments saved by [`save_training_state`], if present.
pub fn read_training_state(dir: &Path) -> Result<Option<(TrainerState, HashMap<String, Tensor>)>> {
    let state_path = dir.join("trainer_state.json");
    if !state_path.exists() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&state_path).map_err(|e| GenolensError::io(&state_path, e))?;
    let state: TrainerState = serde_json::from_str(&text).map_err(|e| GenolensError::Config {
        path: state_path.clone(),
        message: e.to_string(),
    })?;
    let moments = candle_core::safetensors::load(
        dir.join("optimizer.safetensors"),
        &candle_core::Device::Cpu,
    )?;
    Ok(Some((state, moments)))
}
