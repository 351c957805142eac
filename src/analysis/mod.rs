//! Analyses over the hooked model, one file per method, as plain functions with documented
//! defaults (in the spirit of tangermeme's `ism.py` / `ablate.py`). Every analysis reaches the
//! model through the one batched runner here: examples → length-bucketed batches → forward →
//! per-sequence results, in input order, with a progress bar and bounded memory.

pub mod ablation;
pub mod ablation_study;
pub mod attention;
pub mod attention_study;
pub mod attribution;
pub mod attribution_study;
pub mod explain_metrics;
pub mod faithfulness;
pub mod faithfulness_study;
pub mod gradient;
pub mod motifs;
pub mod motifs_study;
pub mod patching;
pub mod patching_study;
pub mod pooling;
pub mod promoter_patching;
pub mod sae;
pub mod variant_pairs;

use candle_core::Device;

use crate::data::Example;
use crate::error::{GenolensError, Result};
use crate::model::{Batch, Hooks, LoadedModel, Output};
use crate::tokenize::{Tokenized, Tokenizer};

pub use gradient::{embedding_gradient, gradient_x_input};
pub use pooling::{mean_over_kmers, pool_activation, Pooling};

/// How the runner batches and reports.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Sequences per forward pass. Default 16.
    pub batch_size: usize,
    /// Batches read ahead and sorted by token count, so that a batch holds sequences of similar
    /// length and pads little. Memory holds `batch_size × read_ahead` examples plus one batch's
    /// activations, whatever the input size. Default 16.
    pub read_ahead: usize,
    /// Message of the progress bar (a bar when the input's length is known, else a spinner);
    /// `None` shows none. Default `None`.
    pub progress: Option<String>,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            batch_size: 16,
            read_ahead: 16,
            progress: None,
        }
    }
}

impl BatchOptions {
    /// `batch_size` sequences per pass, with a progress bar labelled `message`.
    pub fn with_progress(batch_size: usize, message: &str) -> Self {
        BatchOptions {
            batch_size,
            progress: Some(message.to_string()),
            ..Default::default()
        }
    }
}

/// One batch as the runner hands it to an analysis: the padded batch and, row by row, the
/// example and its tokens (rows are in length order, not input order).
pub struct PreparedBatch<'a> {
    /// Padded ids, attention mask and lengths, on the model's device.
    pub batch: Batch,
    /// The example of each row.
    pub examples: Vec<&'a Example>,
    /// The tokens of each row (ids and nucleotide spans).
    pub tokens: Vec<&'a Tokenized>,
}

impl PreparedBatch<'_> {
    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// True for a batch without sequences (the runner never makes one).
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }
}

/// What the tokenizer did to the input: N and other IUPAC codes become [UNK] on purpose, and are
/// counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TokenizationCounts {
    /// Sequences read.
    pub sequences: usize,
    /// Sequences containing at least one non-ACGT base.
    pub sequences_with_ambiguous_bases: usize,
    /// Non-ACGT bases (N, IUPAC codes).
    pub ambiguous_bases: usize,
    /// k-mer tokens.
    pub kmer_tokens: usize,
    /// k-mer tokens that became [UNK].
    pub unknown_tokens: usize,
}

impl TokenizationCounts {
    fn add(&mut self, tokens: &Tokenized) {
        self.sequences += 1;
        self.sequences_with_ambiguous_bases += usize::from(tokens.ambiguous_bases > 0);
        self.ambiguous_bases += tokens.ambiguous_bases;
        self.kmer_tokens += tokens.kmer_count();
        self.unknown_tokens += tokens.unknown_tokens;
    }

    /// Logs a warning when some k-mers became [UNK].
    pub fn warn_if_unknown(&self) {
        if self.unknown_tokens > 0 {
            tracing::warn!(
                "{} of {} sequences contain N or other IUPAC codes: {} of {} k-mer tokens became [UNK]",
                self.sequences_with_ambiguous_bases,
                self.sequences,
                self.unknown_tokens,
                self.kmer_tokens
            );
        }
    }
}

/// Tokenizes `(id, sequence)` pairs and pads them into one batch on `device`.
pub fn tokenize_batch<'a>(
    tokenizer: &Tokenizer,
    sequences: impl IntoIterator<Item = (&'a str, &'a str)>,
    device: &Device,
) -> Result<(Batch, Vec<Tokenized>)> {
    let tokenized = sequences
        .into_iter()
        .map(|(id, sequence)| tokenizer.tokenize(id, sequence))
        .collect::<Result<Vec<_>>>()?;
    let batch = Batch::from_tokenized(&tokenized, tokenizer.special().pad, device)?;
    Ok((batch, tokenized))
}

/// Runs `analyse` over every example in length-bucketed batches and hands each sequence's
/// result to `emit` in input order. `analyse` returns one result per row of the batch it is
/// given. Returns what the tokenizer counted. Errors name the sequence that could not be
/// tokenized (too long, empty); an empty input is not an error here (the caller decides).
pub fn run_batches<R>(
    tokenizer: &Tokenizer,
    device: &Device,
    examples: impl IntoIterator<Item = Result<Example>>,
    options: &BatchOptions,
    mut analyse: impl FnMut(&PreparedBatch) -> Result<Vec<R>>,
    mut emit: impl FnMut(&Example, R) -> Result<()>,
) -> Result<TokenizationCounts> {
    if options.batch_size == 0 || options.read_ahead == 0 {
        return Err(GenolensError::argument(
            "batch size",
            "batch_size and read_ahead must be at least 1",
        ));
    }
    let mut examples = examples.into_iter();
    let progress = options
        .progress
        .as_deref()
        .map(|message| match examples.size_hint() {
            (low, Some(high)) if low == high => crate::progress::bar(low as u64, message),
            _ => crate::progress::spinner(message),
        });
    let mut counts = TokenizationCounts::default();
    loop {
        let chunk: Vec<Example> = examples
            .by_ref()
            .take(options.batch_size * options.read_ahead)
            .collect::<Result<_>>()?;
        if chunk.is_empty() {
            break;
        }
        let tokenized = chunk
            .iter()
            .map(|example| tokenizer.tokenize(&example.id, &example.sequence))
            .collect::<Result<Vec<_>>>()?;
        tokenized.iter().for_each(|tokens| counts.add(tokens));
        // Stable sort: equal lengths keep input order, so batches are reproducible.
        let mut order: Vec<usize> = (0..chunk.len()).collect();
        order.sort_by_key(|&i| tokenized[i].ids.len());
        let mut results: Vec<Option<R>> = (0..chunk.len()).map(|_| None).collect();
        for rows in order.chunks(options.batch_size) {
            let row_tokens: Vec<&Tokenized> = rows.iter().map(|&i| &tokenized[i]).collect();
            let owned: Vec<Tokenized> = row_tokens.iter().map(|t| (*t).clone()).collect();
            let prepared = PreparedBatch {
                batch: Batch::from_tokenized(&owned, tokenizer.special().pad, device)?,
                examples: rows.iter().map(|&i| &chunk[i]).collect(),
                tokens: row_tokens,
            };
            let batch_results = analyse(&prepared)?;
            crate::interrupt::batch_done();
            if batch_results.len() != rows.len() {
                return Err(GenolensError::argument(
                    "analysis",
                    format!(
                        "returned {} results for a batch of {} sequences",
                        batch_results.len(),
                        rows.len()
                    ),
                ));
            }
            for (&row, result) in rows.iter().zip(batch_results) {
                results[row] = Some(result);
            }
        }
        for (example, result) in chunk.iter().zip(results) {
            emit(example, result.expect("every row was analysed"))?;
        }
        if let Some(bar) = &progress {
            bar.inc(chunk.len() as u64);
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    Ok(counts)
}

/// [`run_batches`] with the model's hooked forward pass: `analyse` gets each batch and its
/// [`Output`] (logits, [CLS], the activations `hooks` captured) and returns one result per row.
pub fn run_forward<R>(
    loaded: &LoadedModel,
    examples: impl IntoIterator<Item = Result<Example>>,
    hooks: &Hooks,
    options: &BatchOptions,
    mut analyse: impl FnMut(&PreparedBatch, &Output) -> Result<Vec<R>>,
    emit: impl FnMut(&Example, R) -> Result<()>,
) -> Result<TokenizationCounts> {
    run_batches(
        &loaded.tokenizer,
        loaded.model.device(),
        examples,
        options,
        |prepared| {
            let output = loaded.model.forward(&prepared.batch, hooks)?;
            analyse(prepared, &output)
        },
        emit,
    )
}

/// [`run_forward`] collecting the results into a vector in input order.
pub fn collect_forward<R>(
    loaded: &LoadedModel,
    examples: &[Example],
    hooks: &Hooks,
    options: &BatchOptions,
    analyse: impl FnMut(&PreparedBatch, &Output) -> Result<Vec<R>>,
) -> Result<Vec<R>> {
    let mut results = Vec::with_capacity(examples.len());
    run_forward(
        loaded,
        examples.iter().cloned().map(Ok),
        hooks,
        options,
        analyse,
        |_, result| {
            results.push(result);
            Ok(())
        },
    )?;
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HeadKind, HookedModel, ModelConfig};
    use crate::tokenize::{KmerTokenizer, KmerVocab};

    fn examples(count: usize) -> Vec<Example> {
        // Lengths vary so that length sorting reorders the batches.
        (0..count)
            .map(|i| Example {
                id: format!("s{i}"),
                sequence: "ACGTTGCA".repeat(1 + (i * 7) % 5),
                label: None,
            })
            .collect()
    }

    #[test]
    fn results_come_back_in_input_order_whatever_the_batching() {
        let tokenizer = Tokenizer::from(KmerTokenizer::new(KmerVocab::dnabert(3), 64));
        let input = examples(23);
        for (batch_size, read_ahead) in [(1, 1), (4, 2), (5, 16), (64, 1)] {
            let options = BatchOptions {
                batch_size,
                read_ahead,
                progress: None,
            };
            let mut seen = Vec::new();
            let counts = run_batches(
                &tokenizer,
                &Device::Cpu,
                input.iter().cloned().map(Ok),
                &options,
                |prepared| {
                    assert!(prepared.len() <= batch_size);
                    Ok(prepared.examples.iter().map(|e| e.id.clone()).collect())
                },
                |example, id| {
                    assert_eq!(example.id, id);
                    seen.push(id);
                    Ok(())
                },
            )
            .unwrap();
            let expected: Vec<String> = input.iter().map(|e| e.id.clone()).collect();
            assert_eq!(seen, expected);
            assert_eq!(counts.sequences, 23);
        }
    }

    #[test]
    fn a_forward_result_does_not_depend_on_the_batch_it_ran_in() {
        let config = ModelConfig::bert(4usize.pow(3) + 5, 2, 16, 2, 32, 64);
        let model = HookedModel::random(&config, HeadKind::MaskedLm, 3, &Device::Cpu).unwrap();
        let loaded = LoadedModel::in_memory(model, KmerTokenizer::new(KmerVocab::dnabert(3), 64));
        let input = examples(9);
        let cls = |batch_size| {
            collect_forward(
                &loaded,
                &input,
                &Hooks::none(),
                &BatchOptions {
                    batch_size,
                    ..Default::default()
                },
                |prepared, output| {
                    Ok((0..prepared.len())
                        .map(|row| output.cls.get(row).unwrap().to_vec1::<f32>().unwrap())
                        .collect())
                },
            )
            .unwrap()
        };
        let one_at_a_time = cls(1);
        for (a, b) in one_at_a_time.iter().zip(cls(4)) {
            let difference = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(
                difference < 1e-5,
                "padding changed a result by {difference}"
            );
        }
    }

    #[test]
    fn a_zero_batch_size_and_a_too_long_sequence_are_clear_errors() {
        let tokenizer = Tokenizer::from(KmerTokenizer::new(KmerVocab::dnabert(3), 8));
        let options = BatchOptions {
            batch_size: 0,
            ..Default::default()
        };
        let none = std::iter::empty();
        let error = run_batches(
            &tokenizer,
            &Device::Cpu,
            none,
            &options,
            |_| Ok(vec![()]),
            |_, _| Ok(()),
        )
        .unwrap_err();
        assert!(error.to_string().contains("batch"), "{error}");
        let error = run_batches(
            &tokenizer,
            &Device::Cpu,
            examples(3).into_iter().map(Ok),
            &BatchOptions::default(),
            |p| Ok(vec![(); p.len()]),
            |_, _| Ok(()),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("s0") || error.to_string().contains("s1"),
            "{error}"
        );
    }
}
