//! Loading a model from a local HF folder or a hub id (hf-hub cache; download only with the
//! `hub-download` feature and not under HF_HUB_OFFLINE=1). A load never random-initialises.

use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::Device;
use sha2::{Digest, Sha256};

use crate::error::{GenolensError, Result};
use crate::model::bert::HookedModel;
use crate::model::checkpoint::{normalise, read_tensors};
use crate::model::config::Architecture;
use crate::model::config::ModelConfig;
use crate::model::heads::HeadKind;
use crate::model::weights::WeightTaker;
use crate::tokenize::{BpeTokenizer, KmerTokenizer, KmerVocab, NtTokenizer, Tokenizer};

/// Weight files tried in order.
pub const WEIGHT_FILES: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];

/// How to load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Force a head (an encoder request drops head tensors); `None` = detect from the checkpoint.
    pub head: Option<HeadKind>,
    /// Add the MLM output bias twice, as DNABERT's transformers-2.5 fork did in pretraining.
    pub legacy_double_bias: bool,
    /// Where the weights go.
    pub device: Device,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            head: None,
            legacy_double_bias: false,
            device: Device::Cpu,
        }
    }
}

/// Where a loaded model came from (for provenance).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelSource {
    /// What the user passed (folder or hub id).
    pub id: String,
    /// The folder the files were read from.
    pub dir: PathBuf,
    /// The weights file used.
    pub weights_file: PathBuf,
    /// sha256 of the weights file.
    pub weights_sha256: String,
}

/// A model with its tokenizer and provenance.
pub struct LoadedModel {
    /// The hookable model.
    pub model: HookedModel,
    /// The tokenizer from the folder's vocab.txt (DNABERT, NT) or tokenizer.json (DNABERT-2).
    pub tokenizer: Tokenizer,
    /// Provenance.
    pub source: ModelSource,
    /// Renames, drops and ties applied to checkpoint names.
    pub notes: Vec<String>,
}

impl LoadedModel {
    /// An error unless the model has a sequence-classification head: `{what} needs a sequence
    /// classifier, and <id> is a <HF class>`, naming its config.json.
    pub fn require_classifier(&self, what: &str) -> Result<()> {
        if matches!(
            self.model.head_kind(),
            HeadKind::SequenceClassification { .. }
        ) {
            return Ok(());
        }
        Err(GenolensError::Config {
            path: self.source.dir.join("config.json"),
            message: format!(
                "{what} needs a sequence classifier, and {} is a {}",
                self.source.id,
                self.model.head_kind().hf_class()
            ),
        })
    }

    /// A model built in memory (tests, freshly trained weights): no folder, no weights file.
    pub fn in_memory(model: HookedModel, tokenizer: impl Into<Tokenizer>) -> Self {
        LoadedModel {
            model,
            tokenizer: tokenizer.into(),
            source: ModelSource {
                id: "<in memory>".into(),
                dir: PathBuf::new(),
                weights_file: PathBuf::new(),
                weights_sha256: String::new(),
            },
            notes: Vec::new(),
        }
    }
}

/// Loads `model`: an existing folder, otherwise an `owner/name` hub id.
pub fn load(model: &str, options: &LoadOptions) -> Result<LoadedModel> {
    let path = Path::new(model);
    if path.is_dir() {
        return load_dir(path, model, options);
    }
    let looks_like_hub_id =
        model.split('/').count() == 2 && !model.starts_with('.') && !model.starts_with('/');
    if !looks_like_hub_id {
        return Err(GenolensError::MissingFile {
            dir: model.to_string(),
            file: "(folder)".into(),
            hint: "no such folder, and not an owner/name hub id".into(),
        });
    }
    let dir = resolve_hub(model)?;
    load_dir(&dir, model, options)
}

/// Loads a local HF folder: config.json, vocab.txt and model.safetensors or pytorch_model.bin.
pub fn load_dir(dir: &Path, id: &str, options: &LoadOptions) -> Result<LoadedModel> {
    let require = |file: &str, hint: &str| {
        let path = dir.join(file);
        if path.is_file() {
            Ok(path)
        } else {
            Err(GenolensError::MissingFile {
                dir: dir.display().to_string(),
                file: file.into(),
                hint: hint.into(),
            })
        }
    };
    let mut config = ModelConfig::from_file(&require("config.json", "the HF model config")?)?;
    config.legacy_double_bias |= options.legacy_double_bias;
    let tokenizer = match config.architecture {
        Architecture::Bert => {
            let vocab =
                KmerVocab::from_file(&require("vocab.txt", "the DNABERT k-mer vocabulary")?)?;
            if vocab.len() != config.vocab_size {
                return Err(GenolensError::Vocab {
                    path: vocab.path.clone(),
                    message: format!(
                        "{} tokens but config.json says vocab_size {}",
                        vocab.len(),
                        config.vocab_size
                    ),
                });
            }
            Tokenizer::Kmer(KmerTokenizer::new(vocab, config.max_tokens()))
        }
        Architecture::MosaicBert => Tokenizer::Bpe(Box::new(BpeTokenizer::from_file(
            &require("tokenizer.json", "DNABERT-2's BPE tokenizer")?,
            config.vocab_size,
            config.max_tokens(),
        )?)),
        Architecture::Esm => Tokenizer::Nt(NtTokenizer::from_file(
            &require("vocab.txt", "the Nucleotide Transformer 6-mer vocabulary")?,
            config.vocab_size,
            config.max_tokens(),
        )?),
    };
    let weights_file = WEIGHT_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| GenolensError::MissingFile {
            dir: dir.display().to_string(),
            file: WEIGHT_FILES.join(" or "),
            hint: "the model weights".into(),
        })?;
    let model = load_weights(&config, &weights_file, options)?;
    let source = ModelSource {
        id: id.to_string(),
        dir: dir.to_path_buf(),
        weights_sha256: sha256_file(&weights_file)?,
        weights_file,
    };
    Ok(LoadedModel {
        model: model.0,
        tokenizer,
        source,
        notes: model.1,
    })
}

/// Builds the model from one weights file; fails listing every missing, unexpected or misshapen tensor.
pub fn load_weights(
    config: &ModelConfig,
    weights_file: &Path,
    options: &LoadOptions,
) -> Result<(HookedModel, Vec<String>)> {
    let raw = read_tensors(weights_file)?;
    let normalised = normalise(raw, options.head, config)?;
    for note in &normalised.notes {
        tracing::debug!("{}: {note}", weights_file.display());
    }
    let mut taker = WeightTaker::new(weights_file, normalised.tensors, &options.device);
    let model = HookedModel::build(config, normalised.head, &mut taker, &options.device)?;
    taker.finish()?;
    Ok((model, normalised.notes))
}

/// sha256 (hex) of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| GenolensError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file
            .read(&mut buffer)
            .map_err(|e| GenolensError::io(path, e))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0")
        || !cfg!(feature = "hub-download")
}

/// Resolves a hub id to its snapshot folder: the hf-hub cache first, then (online) a download.
fn resolve_hub(id: &str) -> Result<PathBuf> {
    let cache = hf_hub::Cache::from_env();
    let repo = cache.model(id.to_string());
    let config = fetch_hub_file(id, &repo, "config.json", hub_offline())?;
    let tokenizer_file = match ModelConfig::from_file(&config)?.architecture {
        Architecture::MosaicBert => "tokenizer.json",
        Architecture::Bert | Architecture::Esm => "vocab.txt",
    };
    let mut files = vec![config];
    files.push(fetch_hub_file(id, &repo, tokenizer_file, hub_offline())?);
    let weights = WEIGHT_FILES
        .iter()
        .find_map(|file| fetch_hub_file(id, &repo, file, hub_offline()).ok())
        .ok_or_else(|| GenolensError::Hub {
            id: id.into(),
            message: format!("neither {} is available", WEIGHT_FILES.join(" nor ")),
        })?;
    files.push(weights);
    let dir = files[0].parent().map(Path::to_path_buf).unwrap_or_default();
    if files.iter().any(|f| f.parent() != Some(dir.as_path())) {
        return Err(GenolensError::Hub {
            id: id.into(),
            message: "cached files come from different revisions".into(),
        });
    }
    Ok(dir)
}

fn fetch_hub_file(
    id: &str,
    repo: &hf_hub::CacheRepo,
    file: &str,
    offline: bool,
) -> Result<PathBuf> {
    if let Some(path) = repo.get(file) {
        return Ok(path);
    }
    if offline {
        return Err(GenolensError::Hub {
            id: id.into(),
            message: format!(
                "{file} is not in the local Hugging Face cache ({}) and downloads are off \
                 (HF_HUB_OFFLINE set, or built without the hub-download feature); pass a local folder instead",
                hf_hub::Cache::from_env().path().display()
            ),
        });
    }
    download_hub_file(id, file)
}

#[cfg(feature = "hub-download")]
fn download_hub_file(id: &str, file: &str) -> Result<PathBuf> {
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .build()
        .map_err(|e| GenolensError::Hub {
            id: id.into(),
            message: e.to_string(),
        })?;
    api.model(id.to_string())
        .get(file)
        .map_err(|e| GenolensError::Hub {
            id: id.into(),
            message: format!("downloading {file}: {e}"),
        })
}

#[cfg(not(feature = "hub-download"))]
fn download_hub_file(id: &str, file: &str) -> Result<PathBuf> {
    Err(GenolensError::Hub {
        id: id.into(),
        message: format!("{file}: built without the hub-download feature"),
    })
}
