//! Structured starting points for a k-mer MLM's embeddings.
//!
//! Why: with BERT's i.i.d. N(0, 0.02) init a 6-mer MLM sits for a long time on a plateau where it
//! predicts k-mer frequencies but cannot yet read a masked k-mer's bases off its unmasked
//! neighbours (the overlapping k-mers reveal all but one base of a masked span). Two things have
//! to be learnt from nothing there: which bases each of the 4^k token embeddings stands for, and
//! where a token's neighbours are. The k-mer scheme starts both off: a k-mer's embedding is a sum
//! of one random vector per (offset, base), so every base at every offset is linearly readable
//! from the first step (and, through the tied decoder, writable); position embeddings start as
//! sinusoids, so nearby positions are similar and offsets are linear maps. Both are only starting
//! values: every parameter is trained freely, and the architecture is DNABERT's.

use std::str::FromStr;

use candle_core::{Device, Tensor};

use crate::error::Result;
use crate::model::weights::RandomInit;
use crate::tokenize::vocab::{acgt_index, KmerVocab};

/// How a fresh MLM's embeddings are drawn (everything else is BERT's init either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InitScheme {
    /// HF BERT's `_init_weights`: every embedding row i.i.d. N(0, 0.02).
    Bert,
    /// k-mer embeddings as sums of per-(offset, base) vectors; sinusoidal position embeddings.
    #[default]
    Kmer,
}

impl InitScheme {
    /// The name used on the command line and in the model card.
    pub fn name(self) -> &'static str {
        match self {
            InitScheme::Bert => "bert",
            InitScheme::Kmer => "kmer",
        }
    }
}

impl FromStr for InitScheme {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "bert" => Ok(InitScheme::Bert),
            "kmer" => Ok(InitScheme::Kmer),
            other => Err(format!(
                "unknown init scheme {other:?} (expected bert or kmer)"
            )),
        }
    }
}

/// Word embeddings `[vocab, hidden]` whose k-mer rows are Σ_offset v[offset][base at offset],
/// each v ~ N(0, std²/k) so a row has the same scale as BERT's N(0, std²); special tokens get
/// N(0, std²) rows and [PAD] a zero row.
pub fn composed_word_embeddings(
    random: &mut RandomInit,
    vocab: &KmerVocab,
    hidden: usize,
    std: f32,
    device: &Device,
) -> Result<Tensor> {
    let k = vocab.k;
    let parts = random
        .normal(&[k * 4, hidden], std / (k as f32).sqrt())?
        .to_vec2::<f32>()?;
    let specials = random
        .normal(&[vocab.len(), hidden], std)?
        .to_vec2::<f32>()?;
    let mut rows = Vec::with_capacity(vocab.len() * hidden);
    for id in 0..vocab.len() as u32 {
        let token = vocab.token(id).unwrap_or("");
        let bases: Option<Vec<usize>> = token.bytes().map(acgt_index).collect();
        match bases.filter(|b| b.len() == k) {
            Some(bases) => {
                let mut row = vec![0f32; hidden];
                for (offset, base) in bases.into_iter().enumerate() {
                    for (value, part) in row.iter_mut().zip(&parts[offset * 4 + base]) {
                        *value += part;
                    }
                }
                rows.extend(row);
            }
            None if id == vocab.special.pad => rows.extend(std::iter::repeat_n(0f32, hidden)),
            None => rows.extend(&specials[id as usize]),
        }
    }
    Ok(Tensor::from_vec(rows, (vocab.len(), hidden), device)?)
}

/// Position embeddings `[positions, hidden]`: the Transformer's sinusoids (sin on even, cos on odd
/// columns, wavelengths 2π..10000·2π), scaled so their root mean square is `std`.
pub fn sinusoidal_positions(
    positions: usize,
    hidden: usize,
    std: f32,
    device: &Device,
) -> Result<Tensor> {
    let scale = std * std::f32::consts::SQRT_2;
    let mut rows = Vec::with_capacity(positions * hidden);
    for position in 0..positions {
        for column in 0..hidden {
            let frequency = 10000f64.powf(-((column / 2 * 2) as f64) / hidden as f64);
            let angle = position as f64 * frequency;
            let value = if column % 2 == 0 {
                angle.sin()
            } else {
                angle.cos()
            };
            rows.push(scale * value as f32);
        }
    }
    Ok(Tensor::from_vec(rows, (positions, hidden), device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmer_rows_are_sums_of_offset_base_vectors() {
        let vocab = KmerVocab::dnabert(3);
        let mut random = RandomInit::new(7, &Device::Cpu);
        let words = composed_word_embeddings(&mut random, &vocab, 8, 0.02, &Device::Cpu).unwrap();
        let row = |kmer: &str| -> Vec<f32> {
            words
                .get(vocab.id(kmer).unwrap() as usize)
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        // AAC − AAA = CAC − CAA: the last base's vector does not depend on the others.
        for (((aac, aaa), cac), caa) in row("AAC")
            .iter()
            .zip(row("AAA"))
            .zip(row("CAC"))
            .zip(row("CAA"))
        {
            assert!(((aac - aaa) - (cac - caa)).abs() < 1e-6);
        }
        assert_ne!(row("AAC"), row("CAA"), "offsets have their own vectors");
        let pad: Vec<f32> = words.get(0).unwrap().to_vec1().unwrap();
        assert!(pad.iter().all(|v| *v == 0.0));
        let mask: Vec<f32> = words
            .get(vocab.special.mask as usize)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(mask.iter().any(|v| *v != 0.0));
    }

    #[test]
    fn sinusoids_have_the_requested_scale_and_start_at_sin_zero_cos_zero() {
        let positions = sinusoidal_positions(512, 64, 0.02, &Device::Cpu).unwrap();
        let first: Vec<f32> = positions.get(0).unwrap().to_vec1().unwrap();
        assert_eq!(first[0], 0.0);
        assert!((first[1] - 0.02 * std::f32::consts::SQRT_2).abs() < 1e-7);
        let rms = positions
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .sqrt();
        assert!((rms - 0.02).abs() < 0.002, "rms {rms}");
    }

    #[test]
    fn scheme_names_round_trip_and_unknown_names_are_refused() {
        for scheme in [InitScheme::Bert, InitScheme::Kmer] {
            assert_eq!(scheme.name().parse::<InitScheme>().unwrap(), scheme);
        }
        let error = "xavier".parse::<InitScheme>().unwrap_err();
        assert!(
            error.contains("xavier") && error.contains("bert or kmer"),
            "{error}"
        );
    }
}
