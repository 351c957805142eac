//! HF `config.json` → [`ModelConfig`]. Unknown fields (DNABERT's fork adds `rnn`, `split`, ...) are ignored.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{GenolensError, Result};

/// Hidden activation of the feed-forward block. HF's `"gelu"` is the exact erf form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// `0.5·x·(1+erf(x/√2))`: HF `gelu`, the DNABERT default.
    #[serde(rename = "gelu")]
    GeluErf,
    /// tanh approximation: HF `gelu_new` / `gelu_pytorch_tanh`.
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh")]
    GeluTanh,
    /// `max(0, x)`.
    #[serde(rename = "relu")]
    Relu,
    /// `x·σ(x)` (SiLU, "swish"): the gate of NT v2's SwiGLU.
    #[serde(rename = "silu", alias = "swish")]
    Silu,
}

impl Activation {
    /// Applies the activation elementwise.
    pub fn apply(self, x: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
        match self {
            Activation::GeluErf => crate::ops::gelu_erf(x),
            Activation::GeluTanh => x.gelu(),
            Activation::Relu => x.relu(),
            Activation::Silu => candle_nn::ops::silu(x),
        }
    }
}

/// The model family, decided from config.json (`model_type`, `architectures`, `auto_map`) and,
/// where the config is silent, the checkpoint's tensor names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum Architecture {
    /// DNABERT-k: HF `BertModel` (post-LN, learned positions, erf-GELU MLP).
    #[default]
    Bert,
    /// DNABERT-2: MosaicBERT (fused `Wqkv`, symmetric ALiBi, GEGLU MLP, post-LN, no position
    /// table, tied MLM decoder), as the hub's `bert_layers.py` runs it.
    MosaicBert,
    /// Nucleotide Transformer: ESM (pre-LN, final LayerNorm, untied LM head). v1 has learned
    /// positions offset by `padding_idx + 1` and token dropout; v2 rotary embeddings and a
    /// bias-free SwiGLU MLP.
    Esm,
}

impl Architecture {
    /// Every supported family, for messages.
    pub const SUPPORTED: &'static str = "DNABERT-k (BERT: model_type \"bert\"), DNABERT-2 \
        (MosaicBERT: auto_map to bert_layers.*) and the Nucleotide Transformer v1/v2 (ESM: \
        model_type \"esm\", Esm* architectures or auto_map to modeling_esm.*)";

    /// Short name (`bert`, `mosaic-bert`, `esm`).
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Bert => "bert",
            Architecture::MosaicBert => "mosaic-bert",
            Architecture::Esm => "esm",
        }
    }

    /// Whether LayerNorms come before each sublayer (ESM) rather than after (BERT).
    pub fn pre_norm(self) -> bool {
        self == Architecture::Esm
    }
}

/// Architecture hyper-parameters of an encoder: DNABERT-k (BERT), DNABERT-2 (MosaicBERT) or the
/// Nucleotide Transformer (ESM). Fields beyond BERT's are read where the family's config has them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Number of token ids (4^k + 5 for DNABERT-k).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Number of encoder blocks.
    pub num_hidden_layers: usize,
    /// Attention heads per block.
    pub num_attention_heads: usize,
    /// Width of the feed-forward block.
    pub intermediate_size: usize,
    /// Feed-forward activation.
    #[serde(default = "default_activation")]
    pub hidden_act: Activation,
    /// Rows of the learned position table (512 for DNABERT: [CLS] + 510 k-mers + [SEP]).
    pub max_position_embeddings: usize,
    /// Rows of the token-type table (only row 0 is used).
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Id of the padding token.
    #[serde(default)]
    pub pad_token_id: u32,
    /// Class count of a sequence-classification head, when the config names one.
    #[serde(default)]
    pub num_labels: Option<usize>,
    /// Class names by id, when the config names them.
    #[serde(default)]
    pub id2label: Option<std::collections::BTreeMap<String, String>>,
    /// Ids by class name (HF writes both; genolens writes it with `id2label`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label2id: Option<std::collections::BTreeMap<String, usize>>,
    /// What genolens recorded about the model (the dataset a classifier was fine-tuned on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genolens: Option<GenolensRecord>,
    /// HF architecture names (e.g. `BertForMaskedLM`), informational.
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
    /// DNABERT's transformers-2.5 fork added the MLM output bias twice; set to reproduce it.
    #[serde(default)]
    pub legacy_double_bias: bool,
    /// HF's `tie_word_embeddings` (absent = true): `false` says the MLM decoder is its own
    /// matrix, so every transformers version loads the file as it is rather than tying it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tie_word_embeddings: Option<bool>,
    /// HF's `model_type` (absent in DNABERT-2's and NT v2's configs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    /// HF's `auto_map` (remote-code classes: DNABERT-2's `bert_layers.*`, NT v2's `modeling_esm.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_map: Option<serde_json::Value>,
    /// ESM's `position_embedding_type`: `absolute` (NT v1) or `rotary` (NT v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position_embedding_type: Option<String>,
    /// ESM's `token_dropout` (NT v1: true): word embeddings scaled by (1 − 0.15·0.8)/(1 − r),
    /// r the fraction of `<mask>` tokens among a sequence's real tokens.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub token_dropout: bool,
    /// ESM's `emb_layer_norm_before` (false for every NT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emb_layer_norm_before: Option<bool>,
    /// NT v2's `add_bias_fnn` (false): whether the SwiGLU projections have biases. Its presence
    /// marks NT v2's gated MLP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_bias_fnn: Option<bool>,
    /// ESM's `mask_token_id` (token dropout counts it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_token_id: Option<u32>,
    /// The family, detected when the config is read (not a config.json field).
    #[serde(skip)]
    pub architecture: Architecture,
}

/// The `genolens` key of a config.json genolens wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GenolensRecord {
    /// The dataset table a classifier was fine-tuned on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_data: Option<TrainingData>,
}

/// A dataset file as recorded in a model's config.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingData {
    /// The path given at training time (relative paths are relative to the directory training
    /// ran in, usually the repository root).
    pub path: String,
    /// sha256 of the file's bytes.
    pub sha256: String,
}

impl ModelConfig {
    /// Class names in id order, when `id2label` names every id `0..num_labels`.
    pub fn class_names(&self) -> Option<Vec<String>> {
        let labels = self.id2label.as_ref()?;
        (0..labels.len())
            .map(|i| labels.get(&i.to_string()).cloned())
            .collect()
    }

    /// Sets `id2label`, `label2id` and `num_labels` from class names in id order.
    pub fn set_class_names(&mut self, names: &[String]) {
        self.num_labels = Some(names.len());
        self.id2label = Some(
            names
                .iter()
                .enumerate()
                .map(|(i, name)| (i.to_string(), name.clone()))
                .collect(),
        );
        self.label2id = Some(
            names
                .iter()
                .enumerate()
                .map(|(i, name)| (name.clone(), i))
                .collect(),
        );
    }

    /// The dataset a classifier was fine-tuned on, as recorded by genolens.
    pub fn training_data(&self) -> Option<&TrainingData> {
        self.genolens.as_ref()?.training_data.as_ref()
    }
}

fn default_activation() -> Activation {
    Activation::GeluErf
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

impl ModelConfig {
    /// Reads and validates a HF `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| GenolensError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text).map_err(|err| match err {
            GenolensError::Config { message, .. } => GenolensError::Config {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates config JSON text.
    pub fn from_json(text: &str) -> Result<Self> {
        let mut config: ModelConfig =
            serde_json::from_str(text).map_err(|err| GenolensError::Config {
                path: "<config.json>".into(),
                message: err.to_string(),
            })?;
        if config.num_labels.is_none() {
            config.num_labels = config.id2label.as_ref().map(|labels| labels.len());
        }
        config.architecture = config.detect_architecture()?;
        config.validate()?;
        Ok(config)
    }

    /// The family this config describes; an error naming what was found when it is none of
    /// [`Architecture::SUPPORTED`].
    fn detect_architecture(&self) -> Result<Architecture> {
        let modules: Vec<String> = match &self.auto_map {
            Some(serde_json::Value::Object(map)) => map
                .values()
                .filter_map(|v| v.as_str())
                .filter_map(|v| v.rsplit("--").next())
                .filter_map(|v| v.split('.').next())
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        let architectures = self.architectures.clone().unwrap_or_default();
        let model_type = self.model_type.as_deref();
        let architecture = if modules.iter().any(|m| m == "bert_layers") {
            Architecture::MosaicBert
        } else if model_type == Some("esm")
            || modules.iter().any(|m| m == "modeling_esm")
            || architectures.iter().any(|a| a.starts_with("Esm"))
        {
            Architecture::Esm
        } else if matches!(model_type, None | Some("bert"))
            && architectures.iter().all(|a| a.starts_with("Bert"))
        {
            Architecture::Bert
        } else {
            return Err(GenolensError::Config {
                path: "<config.json>".into(),
                message: format!(
                    "unsupported architecture (model_type {model_type:?}, architectures \
                     {architectures:?}, auto_map modules {modules:?}); genolens supports {}",
                    Architecture::SUPPORTED
                ),
            });
        };
        if architecture == Architecture::Esm {
            match self.position_embedding_type.as_deref() {
                None | Some("absolute") | Some("rotary") => {}
                Some(other) => {
                    return Err(GenolensError::Config {
                        path: "<config.json>".into(),
                        message: format!(
                            "position_embedding_type {other:?} is not supported for ESM \
                             (expected \"absolute\", NT v1, or \"rotary\", NT v2)"
                        ),
                    })
                }
            }
        }
        Ok(architecture)
    }

    /// Whether an ESM config uses rotary embeddings (NT v2) rather than a learned table.
    pub fn rotary(&self) -> bool {
        self.architecture == Architecture::Esm
            && self.position_embedding_type.as_deref() == Some("rotary")
    }

    /// Whether the MLP is gated: GEGLU (DNABERT-2) or SwiGLU (NT v2's remote code, recognised
    /// by `add_bias_fnn` or an `auto_map` to `modeling_esm`).
    pub fn gated_mlp(&self) -> bool {
        match self.architecture {
            Architecture::Bert => false,
            Architecture::MosaicBert => true,
            Architecture::Esm => {
                self.add_bias_fnn.is_some()
                    || self.auto_map.as_ref().is_some_and(|m| {
                        m.as_object().is_some_and(|m| {
                            m.values()
                                .filter_map(|v| v.as_str())
                                .any(|v| v.contains("modeling_esm."))
                        })
                    })
            }
        }
    }

    /// Most tokens one input may have, special tokens included: the position table's rows for
    /// BERT and MosaicBERT (DNABERT-2 was trained at 512; ALiBi has no hard limit), and for ESM
    /// the table less the `padding_idx + 1` offset (1000 for NT v1, 2048 for NT v2).
    pub fn max_tokens(&self) -> usize {
        match self.architecture {
            Architecture::Esm => self
                .max_position_embeddings
                .saturating_sub(self.pad_token_id as usize + 1),
            _ => self.max_position_embeddings,
        }
    }

    fn validate(&self) -> Result<()> {
        let fail = |message: String| {
            Err(GenolensError::Config {
                path: "<config.json>".into(),
                message,
            })
        };
        if self.num_attention_heads == 0 || self.hidden_size % self.num_attention_heads != 0 {
            return fail(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.num_hidden_layers == 0 || self.vocab_size == 0 || self.intermediate_size == 0 {
            return fail("num_hidden_layers, vocab_size and intermediate_size must be > 0".into());
        }
        if self.max_position_embeddings < 3 {
            return fail(
                "max_position_embeddings must be at least 3 ([CLS], one token, [SEP])".into(),
            );
        }
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Class count of a classification head: `num_labels`, else the size of `id2label`, else
    /// HF's default of 2 (transformers 5 omits the default from config.json).
    pub fn classifier_labels(&self) -> usize {
        self.num_labels.unwrap_or(2)
    }

    /// The k of a DNABERT-k vocabulary (vocab_size = 4^k + 5), if it is one.
    pub fn dnabert_k(&self) -> Option<usize> {
        (1..=8).find(|k| 4usize.pow(*k as u32) + 5 == self.vocab_size)
    }

    /// Serialises to HF-compatible JSON (what `save_pretrained` would write).
    pub fn to_json(&self) -> String {
        let mut value = serde_json::to_value(self).expect("config serialises");
        let object = value.as_object_mut().expect("config is an object");
        if self.architecture == Architecture::Bert {
            object.insert("model_type".into(), "bert".into());
        }
        if !self.legacy_double_bias {
            object.remove("legacy_double_bias");
        }
        serde_json::to_string_pretty(&value).expect("config serialises")
    }

    /// A BERT encoder of the given shape (erf GELU, LayerNorm eps 1e-12, 2 labels).
    pub fn bert(
        vocab_size: usize,
        layers: usize,
        hidden: usize,
        heads: usize,
        mlp: usize,
        positions: usize,
    ) -> Self {
        ModelConfig {
            vocab_size,
            hidden_size: hidden,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            intermediate_size: mlp,
            hidden_act: Activation::GeluErf,
            max_position_embeddings: positions,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            num_labels: Some(2),
            id2label: None,
            label2id: None,
            genolens: None,
            architectures: None,
            legacy_double_bias: false,
            tie_word_embeddings: None,
            model_type: None,
            auto_map: None,
            position_embedding_type: None,
            token_dropout: false,
            emb_layer_norm_before: None,
            add_bias_fnn: None,
            mask_token_id: None,
            architecture: Architecture::Bert,
        }
    }

    /// A tiny configuration for unit tests (random weights built in Rust).
    pub fn tiny(k: usize) -> Self {
        Self::bert(4usize.pow(k as u32) + 5, 2, 16, 4, 32, 64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dnabert_hub_config_with_fork_fields() {
        let text = r#"{"architectures":["BertForMaskedLM"],"attention_probs_dropout_prob":0.1,
            "hidden_act":"gelu","hidden_dropout_prob":0.1,"hidden_size":768,"initializer_range":0.02,
            "intermediate_size":3072,"max_position_embeddings":512,"num_attention_heads":12,
            "num_hidden_layers":12,"type_vocab_size":2,"vocab_size":4101,"rnn":"lstm","split":10}"#;
        let config = ModelConfig::from_json(text).unwrap();
        assert_eq!(config.dnabert_k(), Some(6));
        assert_eq!(config.head_dim(), 64);
        assert_eq!(config.hidden_act, Activation::GeluErf);
        assert_eq!(config.layer_norm_eps, 1e-12);
    }

    #[test]
    fn rejects_indivisible_heads() {
        let text = r#"{"hidden_size":30,"num_attention_heads":4,"num_hidden_layers":1,
            "intermediate_size":8,"max_position_embeddings":16,"vocab_size":69}"#;
        let err = ModelConfig::from_json(text).unwrap_err().to_string();
        assert!(err.contains("not divisible"), "{err}");
    }

    #[test]
    fn num_labels_from_id2label() {
        let text = r#"{"hidden_size":8,"num_attention_heads":2,"num_hidden_layers":1,
            "intermediate_size":8,"max_position_embeddings":16,"vocab_size":69,
            "id2label":{"0":"neg","1":"pos","2":"other"}}"#;
        assert_eq!(ModelConfig::from_json(text).unwrap().num_labels, Some(3));
    }
}
