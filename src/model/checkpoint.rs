//! Reading checkpoint files (safetensors, zip-format pytorch_model.bin) and normalising HF key names.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::error::{GenolensError, Result};
use crate::model::config::{Architecture, ModelConfig};
use crate::model::esm::ROTARY_INV_FREQ;
use crate::model::heads::HeadKind;

/// Magic bytes that start a torch < 1.6 legacy pickle (protocol 2, then the torch magic number).
const LEGACY_PICKLE_MAGIC: [u8; 8] = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46];
const ZIP_MAGIC: [u8; 4] = [b'P', b'K', 0x03, 0x04];

/// Reads every tensor of a `.safetensors` or zip-format `.bin` file onto the CPU.
pub fn read_tensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
    if is_safetensors {
        let tensors = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| {
            GenolensError::Data {
                path: path.to_path_buf(),
                line: 0,
                message: format!("not a readable safetensors file: {e}"),
            }
        })?;
        return Ok(tensors.into_iter().collect());
    }
    let mut head = [0u8; 8];
    let mut file = std::fs::File::open(path).map_err(|e| GenolensError::io(path, e))?;
    let read = file
        .read(&mut head)
        .map_err(|e| GenolensError::io(path, e))?;
    if read == 8 && head == LEGACY_PICKLE_MAGIC {
        return Err(GenolensError::LegacyPickle {
            path: path.to_path_buf(),
        });
    }
    if read < 4 || head[..4] != ZIP_MAGIC {
        return Err(GenolensError::Data {
            path: path.to_path_buf(),
            line: 0,
            message:
                "not a PyTorch checkpoint (expected a zip archive from torch.save, or safetensors)"
                    .into(),
        });
    }
    candle_core::pickle::read_all(path).map_err(|e| GenolensError::Data {
        path: path.to_path_buf(),
        line: 0,
        message: format!("unreadable zip-format PyTorch checkpoint: {e}"),
    })
}

/// Normalised tensors plus a log of every rename, drop and tie applied.
pub struct Normalised {
    /// Tensors by canonical name (`bert.…`, `cls.…`, `classifier.…`).
    pub tensors: BTreeMap<String, Tensor>,
    /// The head the tensors describe (or the one requested).
    pub head: HeadKind,
    /// Human-readable notes, logged at load time.
    pub notes: Vec<String>,
}

/// Applies the loader rules of models.md §1.2: legacy gamma/beta names, bare-module prefixes,
/// non-parameter buffers, unused heads, and the MLM decoder ties.
pub fn normalise(
    raw: Vec<(String, Tensor)>,
    requested_head: Option<HeadKind>,
    config: &ModelConfig,
) -> Result<Normalised> {
    let config_num_labels = config.classifier_labels();
    let esm = config.architecture == Architecture::Esm;
    let prefix = if esm { "esm" } else { "bert" };
    let mut notes = Vec::new();
    let mut tensors = BTreeMap::new();
    for (name, tensor) in raw {
        let mut canonical = name.clone();
        if let Some(stem) = canonical.strip_suffix("LayerNorm.gamma") {
            canonical = format!("{stem}LayerNorm.weight");
        } else if let Some(stem) = canonical.strip_suffix("LayerNorm.beta") {
            canonical = format!("{stem}LayerNorm.bias");
        }
        if ["embeddings.", "encoder.", "pooler.", "contact_head."]
            .iter()
            .any(|p| canonical.starts_with(p))
        {
            canonical = format!("{prefix}.{canonical}");
        }
        let unused_in_esm = esm
            && (canonical.starts_with("esm.contact_head.")
                || (config.rotary() && canonical == "esm.embeddings.position_embeddings.weight"));
        if canonical.ends_with("embeddings.position_ids")
            || canonical.starts_with("cls.seq_relationship.")
            || unused_in_esm
        {
            notes.push(format!("dropped non-parameter or unused tensor {name}"));
            continue;
        }
        if canonical != name {
            notes.push(format!("renamed {name} -> {canonical}"));
        }
        if tensors.insert(canonical.clone(), tensor).is_some() {
            return Err(GenolensError::Data {
                path: "<checkpoint>".into(),
                line: 0,
                message: format!("two tensors normalise to the same name {canonical}"),
            });
        }
    }

    if esm {
        keep_one_inv_freq(&mut tensors, &mut notes)?;
    }
    let classifier_rows = ["classifier.weight", "classifier.out_proj.weight"]
        .iter()
        .find(|name| tensors.contains_key(**name))
        .map(|_| config_num_labels);
    let detected = HeadKind::detect(tensors.keys().map(String::as_str), classifier_rows);
    let head = match requested_head {
        Some(HeadKind::Encoder { .. }) => {
            let pooler = tensors.contains_key("bert.pooler.dense.weight");
            let dropped: Vec<String> = tensors
                .keys()
                .filter(|n| {
                    n.starts_with("cls.")
                        || n.starts_with("classifier.")
                        || n.starts_with("lm_head.")
                })
                .cloned()
                .collect();
            for name in dropped {
                tensors.remove(&name);
                notes.push(format!("dropped head tensor {name} (encoder requested)"));
            }
            HeadKind::Encoder { pooler }
        }
        Some(head) => head,
        None => detected,
    };

    if head == HeadKind::MaskedLm && esm {
        const DECODER: &str = "lm_head.decoder.weight";
        const WORD: &str = "esm.embeddings.word_embeddings.weight";
        // HF ties the ESM decoder unless tie_word_embeddings is false (NT sets it false and
        // stores the decoder).
        if !tensors.contains_key(DECODER) && config.tie_word_embeddings != Some(false) {
            if let Some(word) = tensors.get(WORD).cloned() {
                tensors.insert(DECODER.into(), word);
                notes.push(format!("tied {DECODER} to {WORD} (tie_word_embeddings)"));
            }
        }
    } else if head == HeadKind::MaskedLm {
        // DNABERT's MLM checkpoints carry a pooler that pretraining never trained.
        let pooler: Vec<String> = tensors
            .keys()
            .filter(|n| n.starts_with("bert.pooler."))
            .cloned()
            .collect();
        for name in pooler {
            tensors.remove(&name);
            notes.push(format!(
                "dropped {name} (untrained pooler of a masked-LM checkpoint)"
            ));
        }
        tie_decoder(&mut tensors, &mut notes)?;
    }
    Ok(Normalised {
        tensors,
        head,
        notes,
    })
}

/// NT v2 stores the same rotary `inv_freq` buffer in every layer: layer 0's is kept for the
/// model (under [`ROTARY_INV_FREQ`]), the others are checked equal to it and dropped.
fn keep_one_inv_freq(
    tensors: &mut BTreeMap<String, Tensor>,
    notes: &mut Vec<String>,
) -> Result<()> {
    let names: Vec<String> = tensors
        .keys()
        .filter(|n| n.ends_with(".rotary_embeddings.inv_freq") && n.as_str() != ROTARY_INV_FREQ)
        .cloned()
        .collect();
    for name in names {
        let tensor = tensors.remove(&name).expect("listed above");
        if let Some(first) = tensors.get(ROTARY_INV_FREQ) {
            if first.dims() != tensor.dims() || !tensors_equal(first, &tensor)? {
                return Err(GenolensError::Data {
                    path: "<checkpoint>".into(),
                    line: 0,
                    message: format!(
                        "{name} differs from {ROTARY_INV_FREQ}: one rotary table is expected"
                    ),
                });
            }
        }
        notes.push(format!("dropped {name} (the same buffer as layer 0's)"));
    }
    Ok(())
}

/// The MLM decoder shares the word embeddings and `cls.predictions.bias`; files may store either copy.
fn tie_decoder(tensors: &mut BTreeMap<String, Tensor>, notes: &mut Vec<String>) -> Result<()> {
    const DECODER_WEIGHT: &str = "cls.predictions.decoder.weight";
    const DECODER_BIAS: &str = "cls.predictions.decoder.bias";
    const BIAS: &str = "cls.predictions.bias";
    const WORD: &str = "bert.embeddings.word_embeddings.weight";
    if let Some(word) = tensors.get(WORD).cloned() {
        match tensors.get(DECODER_WEIGHT) {
            None => {
                tensors.insert(DECODER_WEIGHT.into(), word);
                notes.push(format!(
                    "tied {DECODER_WEIGHT} to {WORD} (omitted by save_pretrained)"
                ));
            }
            Some(decoder) if decoder.dims() == word.dims() && tensors_equal(decoder, &word)? => {
                tensors.insert(DECODER_WEIGHT.into(), word);
            }
            Some(_) => notes.push(format!(
                "{DECODER_WEIGHT} differs from {WORD}: loaded untied"
            )),
        }
    }
    if let Some(decoder_bias) = tensors.remove(DECODER_BIAS) {
        if tensors.contains_key(BIAS) {
            notes.push(format!("dropped {DECODER_BIAS} (same parameter as {BIAS})"));
        } else {
            tensors.insert(BIAS.into(), decoder_bias);
            notes.push(format!("renamed {DECODER_BIAS} -> {BIAS}"));
        }
    }
    Ok(())
}

fn tensors_equal(a: &Tensor, b: &Tensor) -> Result<bool> {
    let a = a
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let b = b
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    Ok(a == b)
}
