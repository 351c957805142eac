//! Where the parameters of a model about to be trained come from.

use candle_core::{DType, Device, Tensor};

use crate::error::Result;
use crate::model::source::TensorSource;
use crate::model::weights::{RandomInit, WeightTaker};
use crate::tokenize::vocab::KmerVocab;
use crate::train::kmer_init::{composed_word_embeddings, sinusoidal_positions};

/// HF's BERT initialisation (`_init_weights`): weights and embeddings N(0, 0.02) with the [PAD]
/// embedding row zero, biases 0, LayerNorm γ 1 and β 0, and the MLM decoder tied to the word
/// embeddings (BERT's and DNABERT's `tie_word_embeddings`). Depends only on the seed.
/// [`BertInit::with_kmer_embeddings`] swaps in the structured word and position embeddings of
/// [`crate::train::kmer_init`].
pub struct BertInit {
    random: RandomInit,
    device: Device,
    pad_id: usize,
    word_embeddings: Option<Tensor>,
    kmer_vocab: Option<KmerVocab>,
}

impl BertInit {
    /// A seeded initialiser.
    pub fn new(seed: u64, pad_id: u32, device: &Device) -> Self {
        BertInit {
            random: RandomInit::new(seed, device),
            device: device.clone(),
            pad_id: pad_id as usize,
            word_embeddings: None,
            kmer_vocab: None,
        }
    }

    /// The same, but k-mer word embeddings composed per (offset, base) and sinusoidal positions.
    pub fn with_kmer_embeddings(mut self, vocab: &KmerVocab) -> Self {
        self.kmer_vocab = Some(vocab.clone());
        self
    }
}

impl TensorSource for BertInit {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        if name.ends_with("LayerNorm.weight") {
            return Ok(Tensor::ones(shape, DType::F32, &self.device)?);
        }
        if name.ends_with(".bias") {
            return Ok(Tensor::zeros(shape, DType::F32, &self.device)?);
        }
        if name == "cls.predictions.decoder.weight" {
            if let Some(word) = self.word_embeddings.as_ref().filter(|w| w.dims() == shape) {
                // The same tensor, so a VarSource makes one Var of both: tied in training too.
                return Ok(word.clone());
            }
        }
        if let (Some(vocab), [rows, hidden]) = (&self.kmer_vocab, shape) {
            if name == "bert.embeddings.word_embeddings.weight" && *rows == vocab.len() {
                let tensor =
                    composed_word_embeddings(&mut self.random, vocab, *hidden, 0.02, &self.device)?;
                self.word_embeddings = Some(tensor.clone());
                return Ok(tensor);
            }
            if name == "bert.embeddings.position_embeddings.weight" {
                return sinusoidal_positions(*rows, *hidden, 0.02, &self.device);
            }
        }
        let tensor = self.random.normal(shape, 0.02)?;
        if name == "bert.embeddings.word_embeddings.weight" {
            let tensor = if self.pad_id < shape[0] {
                let zero = Tensor::zeros((1, shape[1]), DType::F32, &self.device)?;
                tensor.slice_assign(&[self.pad_id..self.pad_id + 1, 0..shape[1]], &zero)?
            } else {
                tensor
            };
            self.word_embeddings = Some(tensor.clone());
            return Ok(tensor);
        }
        Ok(tensor)
    }
}

/// A pretrained encoder plus a new task head: `bert.pooler.*` and `classifier.*` come from a
/// seeded [`BertInit`] (named in the model card), everything else from the checkpoint, which must
/// then be used up exactly (checked by [`WeightTaker::finish`]); nothing else is initialised.
pub struct EncoderWithNewHead {
    /// The checkpoint's tensors.
    pub checkpoint: WeightTaker,
    head: BertInit,
    /// Names initialised here rather than read.
    pub initialised: Vec<String>,
}

impl EncoderWithNewHead {
    /// Wraps a checkpoint; the head is drawn from `seed`.
    pub fn new(checkpoint: WeightTaker, seed: u64, pad_id: u32, device: &Device) -> Self {
        EncoderWithNewHead {
            checkpoint,
            head: BertInit::new(seed, pad_id, device),
            initialised: Vec::new(),
        }
    }
}

impl TensorSource for EncoderWithNewHead {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let new_head = name.starts_with("classifier.") || name.starts_with("bert.pooler.");
        if new_head && !self.checkpoint.contains(name) {
            self.initialised.push(name.to_string());
            return self.head.take(name, shape);
        }
        self.checkpoint.take(name, shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::source::VarSource;
    use crate::model::{HeadKind, HookedModel, ModelConfig};

    #[test]
    fn a_fresh_mlm_trains_one_matrix_for_embeddings_and_decoder() {
        let config = ModelConfig::bert(4usize.pow(3) + 5, 1, 16, 2, 32, 16);
        let mut init = BertInit::new(0, 0, &Device::Cpu);
        let mut vars = VarSource::new(&mut init);
        let model =
            HookedModel::build(&config, HeadKind::MaskedLm, &mut vars, &Device::Cpu).unwrap();
        let names: Vec<&str> = vars.vars.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"bert.embeddings.word_embeddings.weight"));
        assert!(
            !names.contains(&"cls.predictions.decoder.weight"),
            "{names:?}"
        );
        let parameters = model.named_parameters();
        assert_eq!(
            parameters["cls.predictions.decoder.weight"].id(),
            parameters["bert.embeddings.word_embeddings.weight"].id()
        );
    }
}
