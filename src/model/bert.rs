//! DNABERT-k: a post-LN BERT encoder with learned positions, erf GELU, and hook points everywhere.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};

use crate::error::Result;
use crate::model::batch::Batch;
use crate::model::config::{Activation, Architecture, ModelConfig};
use crate::model::heads::HeadKind;
use crate::model::hooks::{ActivationCache, BlockSite, HookLayout, HookPoint, Hooks};
use crate::model::source::{Recording, TensorSource};
use crate::model::weights::RandomInit;
use crate::ops::batched_matmul::batched_matmul;
use crate::ops::kernels::masked_softmax;
use crate::ops::relevance::{self, RelevanceRules};
use crate::ops::{additive_key_mask, softmax_last_dim, LayerNorm, Linear};

/// LayerNorm, with σ detached under relevance rules (the identity rule of AttnLRP and CP-LRP).
fn normalize(norm: &LayerNorm, x: &Tensor, hooks: &Hooks) -> Result<Tensor> {
    Ok(match hooks.rules() {
        Some(_) => relevance::layer_norm_detached_std(x, norm)?,
        None => norm.forward(x)?,
    })
}

pub(crate) struct Embeddings {
    pub(crate) word: Tensor,
    /// Learned position table (BERT, NT v1); `None` for ALiBi and rotary models.
    pub(crate) position: Option<Tensor>,
    /// Row of the table the first token reads: 0 for BERT, `padding_idx + 1` for ESM.
    pub(crate) position_offset: usize,
    /// Token-type table (BERT, MosaicBERT; row 0 only).
    pub(crate) token_type: Option<Tensor>,
    /// Embedding LayerNorm (BERT, MosaicBERT; ESM only with `emb_layer_norm_before`).
    pub(crate) layer_norm: Option<LayerNorm>,
}

pub(crate) struct EncoderLayer {
    pub(crate) query: Linear,
    pub(crate) key: Linear,
    pub(crate) value: Linear,
    pub(crate) attention_output: Linear,
    /// Post-LN: after attention (BERT `attention.output.LayerNorm`); pre-LN: before it (ESM
    /// `attention.LayerNorm`).
    pub(crate) attention_layer_norm: LayerNorm,
    /// [d_mlp, d] or, for a gated MLP, [2·d_mlp, d]: the gate's rows first, then the linear's.
    pub(crate) intermediate: Linear,
    pub(crate) output: Linear,
    /// Post-LN: after the MLP; pre-LN: before it (ESM layer `LayerNorm`).
    pub(crate) output_layer_norm: LayerNorm,
}

/// How token positions enter attention.
pub(crate) enum Positions {
    /// A learned table added to the embeddings (BERT, NT v1).
    Learned,
    /// ALiBi: −slope_h·|i − j| added to every head's scores (MosaicBERT).
    Alibi(Vec<f32>),
    /// Rotary embeddings on q and k (NT v2), from the stored or computed `inv_freq` [d_head/2].
    Rotary(Vec<f32>),
}

pub(crate) enum Head {
    Encoder,
    MaskedLm {
        transform: Linear,
        layer_norm: LayerNorm,
        decoder_weight: Tensor,
        bias: Tensor,
    },
    Classifier(Linear),
}

/// What one forward pass returns.
#[derive(Clone, Debug)]
pub struct Output {
    /// [b,t,V] (masked LM) or [b,labels] (classifier); `None` for an encoder without head.
    pub logits: Option<Tensor>,
    /// [b,t,d] final hidden states (HF `last_hidden_state`).
    pub last_hidden_state: Tensor,
    /// [b,d] final [CLS] vector.
    pub cls: Tensor,
    /// [b,d] pooler output, for models with a pooler.
    pub pooled: Option<Tensor>,
    /// Captured activations.
    pub cache: ActivationCache,
}

/// A DNABERT-k model whose every activation can be captured or replaced (see [`Hooks`]).
pub struct HookedModel {
    config: ModelConfig,
    head_kind: HeadKind,
    embeddings: Embeddings,
    positions: Positions,
    layers: Vec<EncoderLayer>,
    /// ESM's `emb_layer_norm_after`, applied to the last block's output.
    final_layer_norm: Option<LayerNorm>,
    /// Activation of the MLP (of its gate, when gated).
    mlp_activation: Activation,
    gated_mlp: bool,
    pooler: Option<Linear>,
    head: Head,
    parameters: BTreeMap<String, Tensor>,
    device: Device,
}

/// `prefix.weight` [out, in] and `prefix.bias` [out].
pub(crate) fn linear(
    source: &mut impl TensorSource,
    prefix: &str,
    out_features: usize,
    in_features: usize,
) -> Result<Linear> {
    Ok(Linear {
        weight: source.take(&format!("{prefix}.weight"), &[out_features, in_features])?,
        bias: source.take(&format!("{prefix}.bias"), &[out_features])?,
    })
}

/// `prefix.weight` [out, in] of a layer without bias; the bias is exact zeros (adding them
/// changes no value), so every dense layer runs through one code path.
pub(crate) fn linear_without_bias(
    source: &mut impl TensorSource,
    name: &str,
    out_features: usize,
    in_features: usize,
    device: &Device,
) -> Result<Linear> {
    Ok(Linear {
        weight: source.take(name, &[out_features, in_features])?,
        bias: Tensor::zeros(out_features, candle_core::DType::F32, device)?,
    })
}

/// `prefix.weight` and `prefix.bias`, both [size].
pub(crate) fn layer_norm(
    source: &mut impl TensorSource,
    prefix: &str,
    size: usize,
    eps: f64,
) -> Result<LayerNorm> {
    Ok(LayerNorm {
        weight: source.take(&format!("{prefix}.weight"), &[size])?,
        bias: source.take(&format!("{prefix}.bias"), &[size])?,
        eps,
    })
}

/// The pieces an architecture's builder assembles (see `dnabert2` and `esm`).
pub(crate) struct Parts {
    pub(crate) embeddings: Embeddings,
    pub(crate) positions: Positions,
    pub(crate) layers: Vec<EncoderLayer>,
    pub(crate) final_layer_norm: Option<LayerNorm>,
    pub(crate) mlp_activation: Activation,
    pub(crate) gated_mlp: bool,
    pub(crate) pooler: Option<Linear>,
    pub(crate) head: Head,
}

/// BERT's embeddings (`bert.embeddings.*`): word, token-type and LayerNorm, and the learned
/// position table when `positions` (DNABERT; DNABERT-2's ALiBi has none).
pub(crate) fn bert_embeddings(
    config: &ModelConfig,
    source: &mut impl TensorSource,
    positions: bool,
) -> Result<Embeddings> {
    let hidden = config.hidden_size;
    Ok(Embeddings {
        word: source.take(
            "bert.embeddings.word_embeddings.weight",
            &[config.vocab_size, hidden],
        )?,
        position: if positions {
            Some(source.take(
                "bert.embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, hidden],
            )?)
        } else {
            None
        },
        position_offset: 0,
        token_type: Some(source.take(
            "bert.embeddings.token_type_embeddings.weight",
            &[config.type_vocab_size, hidden],
        )?),
        layer_norm: Some(layer_norm(
            source,
            "bert.embeddings.LayerNorm",
            hidden,
            config.layer_norm_eps,
        )?),
    })
}

/// BERT's pooler (`bert.pooler.dense`, when the head uses it) and head (`cls.predictions.*` with
/// the MLM transform's LayerNorm at `head_eps`, or `classifier`), shared by DNABERT and
/// DNABERT-2. `tied_to`: the word embeddings a decoder is tied to by construction (DNABERT-2).
pub(crate) fn bert_pooler_and_head(
    config: &ModelConfig,
    head_kind: HeadKind,
    source: &mut impl TensorSource,
    head_eps: f64,
    tied_to: Option<&Tensor>,
) -> Result<(Option<Linear>, Head)> {
    let hidden = config.hidden_size;
    let pooler = if head_kind.uses_pooler() {
        Some(linear(source, "bert.pooler.dense", hidden, hidden)?)
    } else {
        None
    };
    let head = match head_kind {
        HeadKind::Encoder { .. } => Head::Encoder,
        HeadKind::MaskedLm => {
            let name = "cls.predictions.decoder.weight";
            let shape = [config.vocab_size, hidden];
            Head::MaskedLm {
                transform: linear(source, "cls.predictions.transform.dense", hidden, hidden)?,
                layer_norm: layer_norm(
                    source,
                    "cls.predictions.transform.LayerNorm",
                    hidden,
                    head_eps,
                )?,
                decoder_weight: match tied_to {
                    Some(word) => source.take_tied(name, &shape, word)?,
                    None => source.take(name, &shape)?,
                },
                bias: source.take("cls.predictions.bias", &[config.vocab_size])?,
            }
        }
        HeadKind::SequenceClassification { num_labels } => {
            Head::Classifier(linear(source, "classifier", num_labels, hidden)?)
        }
    };
    Ok((pooler, head))
}

/// DNABERT-k (HF `BertModel` names under `bert.`).
fn build_bert(
    config: &ModelConfig,
    head_kind: HeadKind,
    source: &mut impl TensorSource,
) -> Result<Parts> {
    let hidden = config.hidden_size;
    let eps = config.layer_norm_eps;
    let embeddings = bert_embeddings(config, source, true)?;
    let mut layers = Vec::with_capacity(config.num_hidden_layers);
    for layer in 0..config.num_hidden_layers {
        let prefix = format!("bert.encoder.layer.{layer}");
        let dense = |source: &mut _, name: &str, out, inp| {
            linear(source, &format!("{prefix}.{name}"), out, inp)
        };
        layers.push(EncoderLayer {
            query: dense(source, "attention.self.query", hidden, hidden)?,
            key: dense(source, "attention.self.key", hidden, hidden)?,
            value: dense(source, "attention.self.value", hidden, hidden)?,
            attention_output: dense(source, "attention.output.dense", hidden, hidden)?,
            attention_layer_norm: layer_norm(
                source,
                &format!("{prefix}.attention.output.LayerNorm"),
                hidden,
                eps,
            )?,
            intermediate: dense(
                source,
                "intermediate.dense",
                config.intermediate_size,
                hidden,
            )?,
            output: dense(source, "output.dense", hidden, config.intermediate_size)?,
            output_layer_norm: layer_norm(
                source,
                &format!("{prefix}.output.LayerNorm"),
                hidden,
                eps,
            )?,
        });
    }
    let (pooler, head) = bert_pooler_and_head(config, head_kind, source, eps, None)?;
    Ok(Parts {
        embeddings,
        positions: Positions::Learned,
        layers,
        final_layer_norm: None,
        mlp_activation: config.hidden_act,
        gated_mlp: false,
        pooler,
        head,
    })
}

impl HookedModel {
    /// Builds the model from named parameters (HF names of the config's architecture). Every
    /// parameter the architecture needs is taken from `source`; the source decides what a
    /// missing one means.
    pub fn build(
        config: &ModelConfig,
        head_kind: HeadKind,
        source: &mut impl TensorSource,
        device: &Device,
    ) -> Result<Self> {
        let mut source = Recording::new(source);
        let source = &mut source;
        let parts = match config.architecture {
            Architecture::Bert => build_bert(config, head_kind, source)?,
            Architecture::MosaicBert => {
                crate::model::dnabert2::build(config, head_kind, source, device)?
            }
            Architecture::Esm => crate::model::esm::build(config, head_kind, source, device)?,
        };
        let parameters = std::mem::take(&mut source.taken);
        Ok(HookedModel {
            config: config.clone(),
            head_kind,
            embeddings: parts.embeddings,
            positions: parts.positions,
            layers: parts.layers,
            final_layer_norm: parts.final_layer_norm,
            mlp_activation: parts.mlp_activation,
            gated_mlp: parts.gated_mlp,
            pooler: parts.pooler,
            head: parts.head,
            parameters,
            device: device.clone(),
        })
    }

    /// A seeded random model (BERT init) for tests and as a training starting point.
    pub fn random(
        config: &ModelConfig,
        head_kind: HeadKind,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let mut init = RandomInit::new(seed, device);
        Self::build(config, head_kind, &mut init, device)
    }

    /// The architecture.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The MLP's activation (of its gate, for gated MLPs).
    pub fn mlp_activation(&self) -> Activation {
        self.mlp_activation
    }

    /// Which hooks this model has.
    pub fn hook_layout(&self) -> HookLayout {
        HookLayout {
            layers: self.layers.len(),
            pre_norm: self.config.architecture.pre_norm(),
            learned_positions: self.embeddings.position.is_some(),
            token_type: self.embeddings.token_type.is_some(),
            rotary: matches!(self.positions, Positions::Rotary(_)),
            gated_mlp: self.gated_mlp,
            pooler: self.pooler.is_some() || self.config.architecture == Architecture::Bert,
        }
    }

    /// Every hook point of this model, in forward order.
    pub fn hook_points(&self) -> Vec<HookPoint> {
        HookPoint::all_of(&self.hook_layout())
    }

    /// The output head.
    pub fn head_kind(&self) -> HeadKind {
        self.head_kind
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Every parameter by HF name (the decoder weight appears under its own name even when tied).
    pub fn named_parameters(&self) -> &BTreeMap<String, Tensor> {
        &self.parameters
    }

    /// Total parameter count, counting tied tensors once.
    pub fn parameter_count(&self) -> usize {
        let id = |name: &str| self.parameters.get(name).map(|t| t.id());
        let tied = matches!(self.head, Head::MaskedLm { .. })
            && [
                (
                    "cls.predictions.decoder.weight",
                    "bert.embeddings.word_embeddings.weight",
                ),
                (
                    "lm_head.decoder.weight",
                    "esm.embeddings.word_embeddings.weight",
                ),
            ]
            .iter()
            .any(|(decoder, word)| id(decoder).is_some() && id(decoder) == id(word));
        let total: usize = self.parameters.values().map(|t| t.elem_count()).sum();
        if tied {
            total - self.config.vocab_size * self.config.hidden_size
        } else {
            total
        }
    }

    /// Runs the whole model.
    pub fn forward(&self, batch: &Batch, hooks: &Hooks) -> Result<Output> {
        hooks.validate(&self.hook_layout(), self.config.num_attention_heads)?;
        let mut cache = ActivationCache::default();
        let residual = self.embed(batch, hooks, &mut cache)?;
        self.run_layers(0, residual, batch, hooks, cache)
    }

    /// Runs only layers `>= layer`, starting from `residual` as that layer's `hook_resid_pre`
    /// ([b,t,d]). `forward_from(l, cache[blocks.l.hook_resid_pre])` equals the full forward.
    pub fn forward_from(
        &self,
        layer: usize,
        residual: &Tensor,
        batch: &Batch,
        hooks: &Hooks,
    ) -> Result<Output> {
        hooks.validate(&self.hook_layout(), self.config.num_attention_heads)?;
        if layer > self.config.num_hidden_layers {
            return Err(crate::error::GenolensError::hook(
                format!("forward_from({layer})"),
                format!("the model has {} layers", self.config.num_hidden_layers),
            ));
        }
        self.run_layers(
            layer,
            residual.clone(),
            batch,
            hooks,
            ActivationCache::default(),
        )
    }

    /// Runs layers `first..end` from `residual` (layer `first`'s `hook_resid_pre`, [b,t,d]) and
    /// returns layer `end - 1`'s output (layer `end`'s input); no head.
    pub fn forward_layers(
        &self,
        first: usize,
        end: usize,
        residual: &Tensor,
        batch: &Batch,
        hooks: &Hooks,
    ) -> Result<Tensor> {
        let layers = self.config.num_hidden_layers;
        hooks.validate(&self.hook_layout(), self.config.num_attention_heads)?;
        if first > end || end > layers {
            return Err(crate::error::GenolensError::hook(
                format!("forward_layers({first}..{end})"),
                format!("the model has {layers} layers"),
            ));
        }
        let key_mask = additive_key_mask(&batch.attention_mask)?.to_device(&self.device)?;
        let mut cache = ActivationCache::default();
        let mut residual = residual.clone();
        for index in first..end {
            residual = self.run_layer(
                index,
                &self.layers[index],
                residual,
                &key_mask,
                hooks,
                &mut cache,
            )?;
        }
        Ok(residual)
    }

    /// Keys and values [b,t,d] (heads side by side) of layer `layer` for its input `residual`.
    pub fn keys_values(&self, layer: usize, residual: &Tensor) -> Result<(Tensor, Tensor)> {
        let block = self.layers.get(layer).ok_or_else(|| {
            crate::error::GenolensError::hook(
                format!("keys_values({layer})"),
                format!("the model has {} layers", self.config.num_hidden_layers),
            )
        })?;
        let input = if self.config.architecture.pre_norm() {
            block.attention_layer_norm.forward(residual)?
        } else {
            residual.clone()
        };
        Ok((block.key.forward(&input)?, block.value.forward(&input)?))
    }

    /// Layer `layer`'s weights on the host, for evaluating single token rows
    /// ([`RowBlock`](crate::model::rows::RowBlock)).
    pub fn row_block(&self, layer: usize) -> Result<crate::model::rows::RowBlock> {
        use crate::model::rows::{RowBlock, RowLayerNorm, RowLinear};
        if self.config.architecture != Architecture::Bert {
            return Err(crate::error::GenolensError::hook(
                format!("row_block({layer})"),
                format!(
                    "single-row blocks are built for BERT only, and this is a {} model",
                    self.config.architecture.name()
                ),
            ));
        }
        let block = self.layers.get(layer).ok_or_else(|| {
            crate::error::GenolensError::hook(
                format!("row_block({layer})"),
                format!("the model has {} layers", self.config.num_hidden_layers),
            )
        })?;
        let linear = |l: &Linear| RowLinear::new(&l.weight, &l.bias);
        let norm = |n: &LayerNorm| RowLayerNorm::new(&n.weight, &n.bias, n.eps);
        Ok(RowBlock {
            query: linear(&block.query)?,
            key: linear(&block.key)?,
            value: linear(&block.value)?,
            attention_output: linear(&block.attention_output)?,
            attention_layer_norm: norm(&block.attention_layer_norm)?,
            intermediate: linear(&block.intermediate)?,
            output: linear(&block.output)?,
            output_layer_norm: norm(&block.output_layer_norm)?,
            heads: self.config.num_attention_heads,
            head_dim: self.config.head_dim(),
            activation: self.config.hidden_act,
        })
    }

    /// The pooler and classifier on the host (both `None` for models without a classifier).
    pub fn row_head(&self) -> Result<crate::model::rows::RowHead> {
        use crate::model::rows::{RowHead, RowLinear};
        let linear = |l: &Linear| RowLinear::new(&l.weight, &l.bias);
        Ok(match (&self.head, &self.pooler) {
            (Head::Classifier(classifier), Some(pooler)) => RowHead {
                pooler: Some(linear(pooler)?),
                classifier: Some(linear(classifier)?),
            },
            _ => RowHead {
                pooler: None,
                classifier: None,
            },
        })
    }

    /// A classifier's logits [b, classes] without hooks, the last block computed for the [CLS]
    /// row only (its keys and values for every token, its query, attention, MLP and LayerNorms
    /// for [CLS] alone: the head reads nothing else). The same values as [`forward`](Self::forward)
    /// up to float rounding; ISM runs thousands of these. `None` for a model without a classifier.
    pub fn classifier_logits(&self, batch: &Batch) -> Result<Option<Tensor>> {
        Ok(self
            .classifier_forward(batch, &Hooks::none())?
            .map(|(logits, _)| logits))
    }

    /// A classifier's logits [b, classes] under `hooks` (and their relevance rules), with the
    /// activation cache: the last block runs for the [CLS] row only, as in
    /// [`classifier_logits`](Self::classifier_logits), unless a hook reads or changes one of its
    /// sites (then the full forward runs). Gradients flow as in the full forward, and the work
    /// of the other rows' last block (forward and backward) is skipped: what gradient × input,
    /// integrated gradients and AttnLRP of a class need. `None` for a model without a classifier.
    pub fn classifier_forward(
        &self,
        batch: &Batch,
        hooks: &Hooks,
    ) -> Result<Option<(Tensor, ActivationCache)>> {
        let Head::Classifier(classifier) = &self.head else {
            return Ok(None);
        };
        let last = self.layers.len() - 1;
        let last_block_hooked = HookPoint::all(self.layers.len())
            .into_iter()
            .any(|point| point.layer() == Some(last) && hooks.wants(point));
        // The [CLS]-only last block is written for post-LN blocks without rotary embeddings.
        if last_block_hooked || self.config.architecture.pre_norm() {
            let output = self.forward(batch, hooks)?;
            let logits = output
                .logits
                .expect("classifier models always produce logits");
            return Ok(Some((logits, output.cache)));
        }
        hooks.validate(&self.hook_layout(), self.config.num_attention_heads)?;
        let mut cache = ActivationCache::default();
        let mut residual = self.embed(batch, hooks, &mut cache)?;
        let key_mask = additive_key_mask(&batch.attention_mask)?.to_device(&self.device)?;
        for (index, layer) in self.layers.iter().enumerate().take(last) {
            residual = self.run_layer(index, layer, residual, &key_mask, hooks, &mut cache)?;
        }
        let layer = &self.layers[last];
        let (batch_size, tokens, _) = residual.dims3()?;
        let (heads, head_dim) = (self.config.num_attention_heads, self.config.head_dim());
        let cls_in = residual.narrow(1, 0, 1)?.contiguous()?;
        let q = layer
            .query
            .forward(&cls_in)?
            .reshape((batch_size, 1, heads, head_dim))?;
        let k = layer
            .key
            .forward(&residual)?
            .reshape((batch_size, tokens, heads, head_dim))?;
        let v = layer
            .value
            .forward(&residual)?
            .reshape((batch_size, tokens, heads, head_dim))?;
        let z = self.unfused_attention(last, q, k, v, &key_mask, hooks, &mut cache)?;
        let cls = self.finish_after_z(last, layer, cls_in, z, hooks, &mut cache)?;
        let cls = hooks.apply(HookPoint::Cls, cls.squeeze(1)?, &mut cache)?;
        let pooler = self
            .pooler
            .as_ref()
            .expect("classifier models always load a pooler");
        let dense = pooler.forward(&cls)?;
        let pooled = match hooks.rules() {
            Some(_) => relevance::identity_rule(&dense, |x| x.tanh())?,
            None => dense.tanh()?,
        };
        let pooled = hooks.apply(HookPoint::Pooled, pooled, &mut cache)?;
        let logits = hooks.apply(HookPoint::Logits, classifier.forward(&pooled)?, &mut cache)?;
        Ok(Some((logits, cache)))
    }

    /// The final [CLS] vectors [b,d] (after ESM's final LayerNorm) and, for a classifier, its
    /// logits [b, classes], from the last block's output [b,t,d]; no hooks. What a patched run
    /// is read by (an MLM's vocabulary projection is not computed).
    pub fn cls_and_classifier_logits(
        &self,
        last_block_output: &Tensor,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let hooks = Hooks::none();
        let mut cache = ActivationCache::default();
        let cls_in = last_block_output.narrow(1, 0, 1)?;
        let cls = self.final_norm(cls_in, &hooks, &mut cache)?.squeeze(1)?;
        let logits = match (&self.head, &self.pooler) {
            (Head::Classifier(classifier), Some(pooler)) => {
                Some(classifier.forward(&pooler.forward(&cls)?.tanh()?)?)
            }
            _ => None,
        };
        Ok((cls, logits))
    }

    /// Final hidden states [b,t,d] without any head or hooks: what training needs before it picks
    /// the positions a loss looks at (the MLM loss reads ~15 % of positions, so the vocabulary
    /// projection is applied to those rows only, see [`mlm_logits`](Self::mlm_logits)).
    pub fn encode(&self, batch: &Batch) -> Result<Tensor> {
        let hooks = Hooks::none();
        let mut cache = ActivationCache::default();
        let mut residual = self.embed(batch, &hooks, &mut cache)?;
        let key_mask = additive_key_mask(&batch.attention_mask)?.to_device(&self.device)?;
        for (index, layer) in self.layers.iter().enumerate() {
            residual = self.run_layer(index, layer, residual, &key_mask, &hooks, &mut cache)?;
        }
        self.final_norm(residual, &hooks, &mut cache)
    }

    /// ESM's final LayerNorm (`ln_final.hook_normalized`, HF's last hidden state); the identity
    /// for post-LN models.
    fn final_norm(
        &self,
        residual: Tensor,
        hooks: &Hooks,
        cache: &mut ActivationCache,
    ) -> Result<Tensor> {
        match &self.final_layer_norm {
            Some(norm) => hooks.apply(
                HookPoint::LnFinal,
                normalize(norm, &residual, hooks)?,
                cache,
            ),
            None => Ok(residual),
        }
    }

    /// MLM logits [..., V] of hidden states [..., d] (transform, LayerNorm, tied decoder, bias);
    /// `None` for a model without an MLM head.
    pub fn mlm_logits(&self, hidden: &Tensor) -> Result<Option<Tensor>> {
        let Head::MaskedLm {
            transform,
            layer_norm,
            decoder_weight,
            bias,
        } = &self.head
        else {
            return Ok(None);
        };
        let transformed =
            layer_norm.forward(&self.config.hidden_act.apply(&transform.forward(hidden)?)?)?;
        let decoder = Linear {
            weight: decoder_weight.clone(),
            bias: bias.clone(),
        };
        let mut logits = decoder.forward(&transformed)?;
        if self.config.legacy_double_bias {
            logits = logits.broadcast_add(bias)?;
        }
        Ok(Some(logits))
    }

    /// Word-embedding rows W_E[ids] as [b,t,d]: what `hook_embed` sees (HF `inputs_embeds`).
    pub fn word_embeddings(&self, ids: &Tensor) -> Result<Tensor> {
        let (batch_size, tokens) = ids.dims2()?;
        let rows = crate::ops::embedding_rows(&self.embeddings.word, &ids.flatten_all()?)?;
        Ok(rows.reshape((batch_size, tokens, self.config.hidden_size))?)
    }

    fn embed(&self, batch: &Batch, hooks: &Hooks, cache: &mut ActivationCache) -> Result<Tensor> {
        let tokens = batch.ids.dim(1)?;
        let max_tokens = self.config.max_tokens();
        if self.embeddings.position.is_some() && tokens > max_tokens {
            return Err(crate::error::GenolensError::Sequence {
                sequence: "<batch>".into(),
                message: format!(
                    "{tokens} tokens exceed the model's {max_tokens} positions; crop or tile the input"
                ),
            });
        }
        let hidden = self.config.hidden_size;
        let mut summed = hooks.apply(HookPoint::Embed, self.word_embeddings(&batch.ids)?, cache)?;
        if self.config.token_dropout {
            summed = self.token_dropout(summed, batch)?;
        }
        if let Some(table) = &self.embeddings.token_type {
            let token_type = table
                .narrow(0, 0, 1)?
                .unsqueeze(0)?
                .broadcast_as((1, tokens, hidden))?
                .contiguous()?;
            let token_type = hooks.apply(HookPoint::TokenTypeEmbed, token_type, cache)?;
            summed = summed.broadcast_add(&token_type)?;
        }
        if let Some(table) = &self.embeddings.position {
            // Right padding (as `Batch` builds it): token t of every sequence reads row
            // offset + t (ESM's cumulative count of real tokens gives the same rows; pad rows
            // read other rows there, and ESM zeroes them below).
            let position = table
                .narrow(0, self.embeddings.position_offset, tokens)?
                .unsqueeze(0)?;
            let position = hooks.apply(HookPoint::PosEmbed, position, cache)?;
            summed = summed.broadcast_add(&position)?;
        }
        let embedded = match &self.embeddings.layer_norm {
            Some(norm) => normalize(norm, &summed, hooks)?,
            None => summed,
        };
        if self.config.architecture == Architecture::Esm {
            // ESM zeroes the padding rows of the embeddings.
            let mask = batch
                .attention_mask
                .to_dtype(candle_core::DType::F32)?
                .to_device(&self.device)?
                .unsqueeze(2)?;
            return Ok(embedded.broadcast_mul(&mask)?);
        }
        Ok(embedded)
    }

    /// ESM token dropout at inference (NT v1): `<mask>` rows zeroed, then every row scaled by
    /// (1 − 0.15·0.8)/(1 − r), r = the sequence's fraction of `<mask>` among its real tokens
    /// (×0.88 when it has none), in HF's order of operations.
    fn token_dropout(&self, word: Tensor, batch: &Batch) -> Result<Tensor> {
        let mask_id = self.config.mask_token_id.unwrap_or(2);
        let ids = batch.ids.to_device(&Device::Cpu)?.to_vec2::<u32>()?;
        let (batch_size, tokens) = (ids.len(), batch.ids.dim(1)?);
        let mut keep = Vec::with_capacity(batch_size * tokens);
        let mut denominators = Vec::with_capacity(batch_size);
        for (row, length) in ids.iter().zip(&batch.lengths) {
            let masked = row.iter().filter(|&&id| id == mask_id).count();
            keep.extend(row.iter().map(|&id| f32::from(id != mask_id)));
            denominators.push(1.0 - masked as f32 / *length as f32);
        }
        let keep = Tensor::from_vec(keep, (batch_size, tokens, 1), &self.device)?;
        let denominators = Tensor::from_vec(denominators, (batch_size, 1, 1), &self.device)?;
        let train_ratio = 0.15 * 0.8;
        Ok((word.broadcast_mul(&keep)? * (1.0 - train_ratio))?.broadcast_div(&denominators)?)
    }

    fn run_layers(
        &self,
        first_layer: usize,
        mut residual: Tensor,
        batch: &Batch,
        hooks: &Hooks,
        mut cache: ActivationCache,
    ) -> Result<Output> {
        let key_mask = additive_key_mask(&batch.attention_mask)?.to_device(&self.device)?;
        for (index, layer) in self.layers.iter().enumerate().skip(first_layer) {
            residual = self.run_layer(index, layer, residual, &key_mask, hooks, &mut cache)?;
        }
        let residual = self.final_norm(residual, hooks, &mut cache)?;
        self.run_head(residual, hooks, cache)
    }

    fn run_layer(
        &self,
        index: usize,
        layer: &EncoderLayer,
        residual: Tensor,
        key_mask: &Tensor,
        hooks: &Hooks,
        cache: &mut ActivationCache,
    ) -> Result<Tensor> {
        let point = |site| HookPoint::block(index, site);
        let (batch_size, tokens, _) = residual.dims3()?;
        let heads = self.config.num_attention_heads;
        let head_dim = self.config.head_dim();
        let residual = hooks.apply(point(BlockSite::ResidPre), residual, cache)?;
        let attention_in = if self.config.architecture.pre_norm() {
            hooks.apply(
                point(BlockSite::Ln1Normalized),
                normalize(&layer.attention_layer_norm, &residual, hooks)?,
                cache,
            )?
        } else {
            residual.clone()
        };

        let split_heads = |x: Tensor| x.reshape((batch_size, tokens, heads, head_dim));
        let q = hooks.apply(
            point(BlockSite::Q),
            split_heads(layer.query.forward(&attention_in)?)?,
            cache,
        )?;
        let k = hooks.apply(
            point(BlockSite::K),
            split_heads(layer.key.forward(&attention_in)?)?,
            cache,
        )?;
        let v = hooks.apply(
            point(BlockSite::V),
            split_heads(layer.value.forward(&attention_in)?)?,
            cache,
        )?;
        self.finish_layer(index, layer, residual, [q, k, v], key_mask, hooks, cache)
    }

    /// Runs layer `layer` from its input `residual` [b,t,d] with its queries, keys and values
    /// ([b,t,heads,d_head] each) already known, and returns its output; no hooks. Patching uses
    /// this when the input differs from a cached run at one token only: that token's q, k, v
    /// are computed alone and the other tokens' are the cached run's.
    pub fn forward_layer_with_qkv(
        &self,
        layer: usize,
        residual: &Tensor,
        qkv: [Tensor; 3],
        batch: &Batch,
    ) -> Result<Tensor> {
        let block = self.layers.get(layer).ok_or_else(|| {
            crate::error::GenolensError::hook(
                format!("forward_layer_with_qkv({layer})"),
                format!("the model has {} layers", self.config.num_hidden_layers),
            )
        })?;
        let key_mask = additive_key_mask(&batch.attention_mask)?.to_device(&self.device)?;
        self.finish_layer(
            layer,
            block,
            residual.clone(),
            qkv,
            &key_mask,
            &Hooks::none(),
            &mut ActivationCache::default(),
        )
    }

    /// The rest of a block after its q, k, v: attention, output projection, LayerNorms, MLP.
    #[allow(clippy::too_many_arguments)]
    fn finish_layer(
        &self,
        index: usize,
        layer: &EncoderLayer,
        residual: Tensor,
        [q, k, v]: [Tensor; 3],
        key_mask: &Tensor,
        hooks: &Hooks,
        cache: &mut ActivationCache,
    ) -> Result<Tensor> {
        let point = |site| HookPoint::block(index, site);
        let head_dim = self.config.head_dim();
        // 1/√d_head applied to q (t·d_head values) rather than to the scores (t² values).
        let scale = (head_dim as f64).powf(-0.5);
        let (q, k) = match &self.positions {
            Positions::Rotary(inv_freq) => {
                let tables = rotary_tables(q.dim(1)?, q.dim(3)?, inv_freq, q.device())?;
                (
                    hooks.apply(point(BlockSite::RotQ), rotary(&q, &tables)?, cache)?,
                    hooks.apply(point(BlockSite::RotK), rotary(&k, &tables)?, cache)?,
                )
            }
            _ => (q, k),
        };
        // The fused op serves every forward that changes nothing at the scores or the pattern
        // and reads no scores: it returns the pattern too when a hook captures it, and it has a
        // backward of its own when a gradient is wanted and no hook is at the pattern.
        let unfused = hooks.wants(point(BlockSite::AttnScores))
            || hooks.is_intervened(point(BlockSite::Pattern))
            || hooks.rules().is_some();
        let alibi = match &self.positions {
            Positions::Alibi(slopes) => Some(slopes.as_slice()),
            _ => None,
        };
        let z = if !unfused && crate::ops::attention::applies(&q, &k, &v) {
            if hooks.wants(point(BlockSite::Pattern)) {
                let (z, pattern) = crate::ops::attention::attention_with_pattern(
                    &q, &k, &v, key_mask, scale, alibi,
                )?;
                hooks.apply(point(BlockSite::Pattern), pattern, cache)?;
                z
            } else {
                crate::ops::attention::attention(&q, &k, &v, key_mask, scale, alibi)?
            }
        } else if !unfused
            && !hooks.wants(point(BlockSite::Pattern))
            && crate::ops::attention::applies_with_gradient(&q, &k, &v)
        {
            // A gradient is wanted and nothing reads the pattern: one node with its own backward.
            crate::ops::attention::attention_with_gradient(&q, &k, &v, key_mask, scale, alibi)?
        } else {
            self.unfused_attention(index, q, k, v, key_mask, hooks, cache)?
        };
        self.finish_after_z(index, layer, residual, z, hooks, cache)
    }

    /// The rest of a block after its attention: `z` [b,t,heads,d_head] for the rows of
    /// `residual` [b,t,d] (all tokens, or the [CLS] row alone).
    fn finish_after_z(
        &self,
        index: usize,
        layer: &EncoderLayer,
        residual: Tensor,
        z: Tensor,
        hooks: &Hooks,
        cache: &mut ActivationCache,
    ) -> Result<Tensor> {
        let point = |site| HookPoint::block(index, site);
        let (batch_size, tokens, hidden) = residual.dims3()?;
        let z = hooks.apply(point(BlockSite::Z), z, cache)?;

        let mut attention_out = layer
            .attention_output
            .forward(&z.reshape((batch_size, tokens, hidden))?)?;
        if hooks.wants(point(BlockSite::Result)) {
            let result = self.per_head_result(layer, &z)?;
            let changed = hooks.apply(point(BlockSite::Result), result.clone(), cache)?;
            if hooks.is_intervened(point(BlockSite::Result)) {
                // Add only what the intervention changed (Σ_h Δresult_h): the same as summing
                // the heads, and exactly the original output when nothing changed.
                attention_out = (attention_out + (changed - result)?.sum(2)?)?;
            }
        }
        let attention_out = hooks.apply(point(BlockSite::AttnOut), attention_out, cache)?;
        if self.config.architecture.pre_norm() {
            // TransformerLens pre-LN block: resid_mid = resid_pre + attn_out; the MLP reads
            // ln2(resid_mid); resid_post = resid_mid + mlp_out is the block output.
            let resid_mid = hooks.apply(
                point(BlockSite::ResidMid),
                (attention_out + &residual)?,
                cache,
            )?;
            let normalized = hooks.apply(
                point(BlockSite::Ln2Normalized),
                normalize(&layer.output_layer_norm, &resid_mid, hooks)?,
                cache,
            )?;
            let mlp_out = self.mlp_in_steps(index, layer, &normalized, hooks, cache)?;
            let mlp_out = hooks.apply(point(BlockSite::MlpOut), mlp_out, cache)?;
            return hooks.apply(point(BlockSite::ResidPost), (mlp_out + resid_mid)?, cache);
        }
        // TransformerLens BertBlock: the residual sums are hooked BEFORE each LayerNorm.
        let normalized_mid = hooks.apply(
            point(BlockSite::Ln1Normalized),
            self.norm_of_sum(
                point(BlockSite::ResidMid),
                &layer.attention_layer_norm,
                attention_out,
                &residual,
                hooks,
                cache,
            )?,
            cache,
        )?;

        let erf_gelu = self.mlp_activation == Activation::GeluErf && !self.gated_mlp;
        let whole_mlp = if erf_gelu
            && hooks.rules().is_none()
            && !hooks.wants(point(BlockSite::MlpPre))
            && !hooks.wants(point(BlockSite::MlpPost))
        {
            // Nobody reads inside the MLP: both products and the GELU in one blocked op.
            let (rows, width) = (batch_size * tokens, hidden);
            crate::ops::mlp::feed_forward_gelu(
                &normalized_mid.reshape((rows, width))?,
                &layer.intermediate.weight,
                &layer.intermediate.bias,
                &layer.output.weight,
                &layer.output.bias,
            )?
            .map(|out| out.reshape((batch_size, tokens, width)))
            .transpose()?
        } else {
            None
        };
        let mlp_out = match whole_mlp {
            Some(out) => out,
            None => self.mlp_in_steps(index, layer, &normalized_mid, hooks, cache)?,
        };
        let mlp_out = hooks.apply(point(BlockSite::MlpOut), mlp_out, cache)?;
        let normalized = hooks.apply(
            point(BlockSite::Ln2Normalized),
            self.norm_of_sum(
                point(BlockSite::ResidPost),
                &layer.output_layer_norm,
                mlp_out,
                &normalized_mid,
                hooks,
                cache,
            )?,
            cache,
        )?;
        hooks.apply(point(BlockSite::NormalizedResidPost), normalized, cache)
    }

    /// `norm(branch + residual)`, the sum hooked at `sum_point`; one pass when nobody reads the
    /// sum and no gradient is wanted (the same values either way).
    fn norm_of_sum(
        &self,
        sum_point: HookPoint,
        norm: &LayerNorm,
        branch: Tensor,
        residual: &Tensor,
        hooks: &Hooks,
        cache: &mut ActivationCache,
    ) -> Result<Tensor> {
        if !hooks.wants(sum_point) && hooks.rules().is_none() {
            if let Some(normalized) = crate::ops::layer_norm::layer_norm_of_sum(
                &branch,
                residual,
                &norm.weight,
                &norm.bias,
                norm.eps,
            )? {
                return Ok(normalized);
            }
        }
        let sum = hooks.apply(sum_point, (branch + residual)?, cache)?;
        normalize(norm, &sum, hooks)
    }

    /// The MLP as separate ops, with hooks on the pre- and post-activation.
    fn mlp_in_steps(
        &self,
        index: usize,
        layer: &EncoderLayer,
        normalized_mid: &Tensor,
        hooks: &Hooks,
        cache: &mut ActivationCache,
    ) -> Result<Tensor> {
        let point = |site| HookPoint::block(index, site);
        if self.gated_mlp {
            return self.gated_mlp_in_steps(index, layer, normalized_mid, hooks, cache);
        }
        let fused_gelu = if self.mlp_activation == Activation::GeluErf
            && hooks.rules().is_none()
            && !hooks.wants(point(BlockSite::MlpPre))
        {
            // Nobody reads the pre-activation: the GELU is applied inside the dense op.
            layer.intermediate.forward_gelu(normalized_mid)?
        } else {
            None
        };
        let post = match fused_gelu {
            Some(post) => post,
            None => {
                let pre = hooks.apply(
                    point(BlockSite::MlpPre),
                    layer.intermediate.forward(normalized_mid)?,
                    cache,
                )?;
                self.activate(&pre, hooks)?
            }
        };
        let post = hooks.apply(point(BlockSite::MlpPost), post, cache)?;
        Ok(layer.output.forward(&post)?)
    }

    /// The MLP's activation; under relevance rules the identity rule (its relevance passes
    /// through unchanged, as LXT treats GELU and SiLU).
    fn activate(&self, pre: &Tensor, hooks: &Hooks) -> Result<Tensor> {
        Ok(if hooks.rules().is_some() {
            match self.mlp_activation {
                Activation::GeluErf => relevance::gelu_identity_rule(pre)?,
                act => relevance::identity_rule(pre, |x| act.apply(x))?,
            }
        } else {
            self.mlp_activation.apply(pre)?
        })
    }

    /// A gated MLP (GEGLU in DNABERT-2, SwiGLU in NT v2): `act(x W_g) ⊙ (x W_l)`, then the
    /// output projection. `mlp.hook_pre` is the gate's pre-activation, `mlp.hook_pre_linear`
    /// the other half, `mlp.hook_post` the product (TransformerLens's gated MLP). Under
    /// relevance rules the product splits its relevance equally between the factors (LXT's
    /// uniform rule for an elementwise product: the output gradient is halved).
    fn gated_mlp_in_steps(
        &self,
        index: usize,
        layer: &EncoderLayer,
        normalized: &Tensor,
        hooks: &Hooks,
        cache: &mut ActivationCache,
    ) -> Result<Tensor> {
        let point = |site| HookPoint::block(index, site);
        let both = layer.intermediate.forward(normalized)?;
        let width = self.config.intermediate_size;
        let last = both.rank() - 1;
        let gate = match self.mlp_activation {
            Activation::GeluErf => Some(crate::ops::mlp::Gate::GeluErf),
            Activation::Silu => Some(crate::ops::mlp::Gate::Silu),
            _ => None,
        };
        if let Some(gate) = gate.filter(|_| {
            hooks.rules().is_none()
                && !hooks.wants(point(BlockSite::MlpPre))
                && !hooks.wants(point(BlockSite::MlpPreLinear))
        }) {
            // Nobody reads the halves: the activation and the product in one pass.
            if let Some(post) = crate::ops::mlp::gated_product(&both, gate)? {
                let post = hooks.apply(point(BlockSite::MlpPost), post, cache)?;
                return Ok(layer.output.forward(&post)?);
            }
        }
        let gate = hooks.apply(
            point(BlockSite::MlpPre),
            both.narrow(last, 0, width)?,
            cache,
        )?;
        let linear = hooks.apply(
            point(BlockSite::MlpPreLinear),
            both.narrow(last, width, width)?,
            cache,
        )?;
        let product = (self.activate(&gate, hooks)? * linear)?;
        let post = match hooks.rules() {
            Some(_) => relevance::scale_gradient(&product, 0.5)?,
            None => product,
        };
        let post = hooks.apply(point(BlockSite::MlpPost), post, cache)?;
        Ok(layer.output.forward(&post)?)
    }

    /// Attention with the scores and pattern as tensors (hooks can read or replace them, and
    /// gradients flow through): [b, t, h, d_head] q, k, v → z of the same shape.
    #[allow(clippy::too_many_arguments)]
    fn unfused_attention(
        &self,
        index: usize,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        key_mask: &Tensor,
        hooks: &Hooks,
        cache: &mut ActivationCache,
    ) -> Result<Tensor> {
        let point = |site| HookPoint::block(index, site);
        let scale = (self.config.head_dim() as f64).powf(-0.5);
        // [b, h, t, d_head] views: the batched products read the strides in place (candle's
        // matmul elsewhere needs them contiguous).
        let by_head = |x: Tensor| -> Result<Tensor> {
            let x = x.transpose(1, 2)?;
            Ok(if x.device().is_cpu() {
                x
            } else {
                x.contiguous()?
            })
        };
        // Relevance rules (LXT's eager BERT): AttnLRP halves the gradient of both products'
        // outputs; CP-LRP detaches q and k (the pattern is a constant) and halves nothing.
        // Halving the scores' gradient is halving q's and k's (the product is bilinear and ×0.5
        // is exact), which keeps [t, d_head] tensors for the backward rather than [t, t] ones.
        let rules = hooks.rules();
        let (q, k) = match rules {
            Some(RelevanceRules::AttnLrp) => (
                by_head(relevance::scaled(&q, scale, 0.5 * scale)?)?,
                by_head(relevance::scale_gradient(&k, 0.5)?)?,
            ),
            Some(RelevanceRules::CpLrp) => ((by_head(q.detach())? * scale)?, by_head(k.detach())?),
            None => ((by_head(q)? * scale)?, by_head(k)?),
        };
        let v = by_head(v)?;
        let mut product = batched_matmul(&q, &k.t()?)?;
        if let Positions::Alibi(slopes) = &self.positions {
            let queries = product.dim(2)?;
            let keys = product.dim(3)?;
            product = product.broadcast_add(&alibi_bias(slopes, queries, keys, &self.device)?)?;
        }
        let pattern = if hooks.wants(point(BlockSite::AttnScores)) {
            let scores = product.broadcast_add(key_mask)?;
            let scores = hooks.apply(point(BlockSite::AttnScores), scores, cache)?;
            softmax_last_dim(&scores)?
        } else {
            // Nobody reads the masked scores: add the mask inside the softmax pass.
            masked_softmax(&product, key_mask)?
        };
        let pattern = hooks.apply(point(BlockSite::Pattern), pattern, cache)?;
        let z = batched_matmul(&pattern, &v)?;
        let z = match rules {
            Some(RelevanceRules::AttnLrp) => relevance::scale_gradient(&z, 0.5)?,
            _ => z,
        };
        Ok(z.transpose(1, 2)?.contiguous()?)
    }

    /// Per-head contributions z_h · W_O[:, h] as [b,t,h,d_model] (before the output bias).
    fn per_head_result(&self, layer: &EncoderLayer, z: &Tensor) -> Result<Tensor> {
        let (batch_size, tokens, heads, head_dim) = z.dims4()?;
        let hidden = self.config.hidden_size;
        // W_O is [d_model, h·d_head]; per head it is [d_head, d_model].
        let w_o = layer
            .attention_output
            .weight
            .reshape((hidden, heads, head_dim))?
            .permute((1, 2, 0))?
            .contiguous()?;
        let z_by_head = z
            .permute((2, 0, 1, 3))?
            .reshape((heads, batch_size * tokens, head_dim))?;
        let result = z_by_head.matmul(&w_o)?;
        Ok(result
            .reshape((heads, batch_size, tokens, hidden))?
            .permute((1, 2, 0, 3))?
            .contiguous()?)
    }

    fn run_head(
        &self,
        last_hidden_state: Tensor,
        hooks: &Hooks,
        mut cache: ActivationCache,
    ) -> Result<Output> {
        let cls = last_hidden_state.narrow(1, 0, 1)?.squeeze(1)?;
        let cls = hooks.apply(HookPoint::Cls, cls, &mut cache)?;
        let pooled = match &self.pooler {
            Some(pooler) => {
                let dense = pooler.forward(&cls)?;
                let pooled = match hooks.rules() {
                    Some(_) => relevance::identity_rule(&dense, |x| x.tanh())?,
                    None => dense.tanh()?,
                };
                Some(hooks.apply(HookPoint::Pooled, pooled, &mut cache)?)
            }
            None => None,
        };
        let logits = match &self.head {
            Head::Encoder => None,
            Head::MaskedLm { .. } => self.mlm_logits(&last_hidden_state)?,
            Head::Classifier(classifier) => {
                let pooled = pooled
                    .as_ref()
                    .expect("classifier models always load a pooler");
                Some(classifier.forward(pooled)?)
            }
        };
        let logits = match logits {
            Some(logits) => Some(hooks.apply(HookPoint::Logits, logits, &mut cache)?),
            None => None,
        };
        Ok(Output {
            logits,
            last_hidden_state,
            cls,
            pooled,
            cache,
        })
    }
}

/// ALiBi biases [1, heads, queries, keys]: −slope_h·|i − j| in f32 (slope rounded to f32 first,
/// then one product with the integer distance, as MosaicBERT computes it).
pub(crate) fn alibi_bias(
    slopes: &[f32],
    queries: usize,
    keys: usize,
    device: &Device,
) -> Result<Tensor> {
    let mut values = Vec::with_capacity(slopes.len() * queries * keys);
    for &slope in slopes {
        for i in 0..queries {
            values.extend((0..keys).map(|j| slope * -((i.abs_diff(j)) as f32)));
        }
    }
    Ok(Tensor::from_vec(
        values,
        (1, slopes.len(), queries, keys),
        device,
    )?)
}

/// cos and sin [1, t, 1, d_head] of the rotary angles: position t (0-based over the padded
/// length, [CLS] at 0) turns each pair (x_i, x_{i+d/2}) by t·inv_freq_i, the angle computed in f32
/// as HF does. One table serves q and k.
fn rotary_tables(
    tokens: usize,
    head_dim: usize,
    inv_freq: &[f32],
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let half = head_dim / 2;
    let mut cos = Vec::with_capacity(tokens * head_dim);
    let mut sin = Vec::with_capacity(tokens * head_dim);
    for t in 0..tokens {
        for i in 0..head_dim {
            let angle = t as f32 * inv_freq[i % half];
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    Ok((
        Tensor::from_vec(cos, (1, tokens, 1, head_dim), device)?,
        Tensor::from_vec(sin, (1, tokens, 1, head_dim), device)?,
    ))
}

/// Rotary embeddings (GPT-NeoX halves, as ESM applies them) on [b, t, heads, d_head] with the
/// tables of [`rotary_tables`].
fn rotary(x: &Tensor, (cos, sin): &(Tensor, Tensor)) -> Result<Tensor> {
    let half = x.dim(3)? / 2;
    let first = x.narrow(3, 0, half)?;
    let second = x.narrow(3, half, half)?;
    let rotated = Tensor::cat(&[&second.neg()?, &first], 3)?;
    Ok((x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?)?)
}

/// ALiBi slopes of `heads` heads as MosaicBERT computes them: for a power of two n, the
/// geometric sequence starting at 2^(−8/n); otherwise those of the nearest lower power of two p
/// followed by every other slope of 2p, up to n.
pub fn alibi_slopes(heads: usize) -> Vec<f32> {
    fn power_of_two(n: usize) -> Vec<f64> {
        let start = 2f64.powf(-(2f64.powf(-((n as f64).log2() - 3.0))));
        (0..n).map(|i| start.powi(i as i32 + 1)).collect()
    }
    let slopes = if heads.is_power_of_two() {
        power_of_two(heads)
    } else {
        let lower = 1usize << heads.ilog2();
        let mut slopes = power_of_two(lower);
        slopes.extend(
            power_of_two(2 * lower)
                .into_iter()
                .step_by(2)
                .take(heads - lower),
        );
        slopes
    };
    slopes.into_iter().map(|s| s as f32).collect()
}
