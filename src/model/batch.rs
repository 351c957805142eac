//! A padded batch of token ids with its attention mask.

use candle_core::{Device, Tensor};

use crate::error::{GenolensError, Result};
use crate::tokenize::Tokenized;

/// Token ids padded on the right to the longest sequence, with a 1/0 attention mask.
#[derive(Clone, Debug)]
pub struct Batch {
    /// [b,t] u32 token ids.
    pub ids: Tensor,
    /// [b,t] u32: 1 for real tokens (incl. [CLS]/[SEP]), 0 for padding.
    pub attention_mask: Tensor,
    /// Real (unpadded) token count of each sequence, [CLS] and [SEP] included.
    pub lengths: Vec<usize>,
    /// Whether each sequence ends with a closing special token ([SEP]: DNABERT, DNABERT-2);
    /// false for the Nucleotide Transformer, whose last token is a sequence token.
    pub ends_with_special: bool,
}

impl Batch {
    /// Pads id sequences of different lengths with `pad_id`.
    pub fn from_ids(sequences: &[Vec<u32>], pad_id: u32, device: &Device) -> Result<Self> {
        if sequences.is_empty() {
            return Err(GenolensError::Sequence {
                sequence: "<batch>".into(),
                message: "empty batch: nothing to run".into(),
            });
        }
        let max_len = sequences.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(sequences.len() * max_len);
        let mut mask = Vec::with_capacity(sequences.len() * max_len);
        for sequence in sequences {
            ids.extend_from_slice(sequence);
            ids.extend(std::iter::repeat_n(pad_id, max_len - sequence.len()));
            mask.extend(std::iter::repeat_n(1u32, sequence.len()));
            mask.extend(std::iter::repeat_n(0u32, max_len - sequence.len()));
        }
        let shape = (sequences.len(), max_len);
        Ok(Batch {
            ids: Tensor::from_vec(ids, shape, device)?,
            attention_mask: Tensor::from_vec(mask, shape, device)?,
            lengths: sequences.iter().map(Vec::len).collect(),
            ends_with_special: true,
        })
    }

    /// Pads tokenised sequences.
    pub fn from_tokenized(tokenized: &[Tokenized], pad_id: u32, device: &Device) -> Result<Self> {
        let ids: Vec<Vec<u32>> = tokenized.iter().map(|t| t.ids.clone()).collect();
        let mut batch = Self::from_ids(&ids, pad_id, device)?;
        batch.ends_with_special = tokenized
            .first()
            .is_none_or(|t| t.spans.last().is_some_and(Option::is_none));
        Ok(batch)
    }

    /// Model positions of sequence `row`'s sequence tokens: after [CLS], before [SEP] when the
    /// tokenizer closes with one.
    pub fn sequence_positions(&self, row: usize) -> std::ops::Range<usize> {
        let end = self.lengths[row].saturating_sub(usize::from(self.ends_with_special));
        1..end.max(1)
    }

    /// Number of sequences.
    pub fn size(&self) -> usize {
        self.lengths.len()
    }

    /// Padded token count.
    pub fn padded_len(&self) -> usize {
        self.lengths.iter().copied().max().unwrap_or(0)
    }

    /// The same batch on another device.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        Ok(Batch {
            ids: self.ids.to_device(device)?,
            attention_mask: self.attention_mask.to_device(device)?,
            lengths: self.lengths.clone(),
            ends_with_special: self.ends_with_special,
        })
    }
}
