//! `genolens convert`: rewrites a model folder's weights in another floating-point type (f16
//! halves what a committed model weighs) and measures what that costs on real sequences, so the
//! tolerance a model card states is a measurement, not a promise.

use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};

use crate::analysis::{run_batches, BatchOptions};
use crate::data::{open_sequences, TableColumns};
use crate::error::{GenolensError, Result};
use crate::model::{load_dir, HeadKind, Hooks, LoadOptions, LoadedModel};
use crate::train::card::append_to_card;
use crate::train::checkpoint::save_model_as;

/// What a conversion changed, measured by running both models on the same sequences.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConversionCheck {
    /// The stored type.
    pub dtype: String,
    /// Sequences compared (each run alone, so there is no padding to exclude).
    pub sequences: usize,
    /// Largest |difference| of the logits (every position of an MLM, the classes of a classifier).
    pub max_logit_difference: f64,
    /// Largest |difference| of the last hidden state.
    pub max_hidden_difference: f64,
    /// Largest |difference| of P(label 1) (classifiers only).
    pub max_probability_difference: Option<f64>,
}

/// Parses `f16`, `bf16` or `f32`.
pub fn parse_dtype(name: &str) -> Result<DType> {
    match name {
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::BF16),
        "f32" => Ok(DType::F32),
        other => Err(GenolensError::Config {
            path: PathBuf::from("--dtype"),
            message: format!("unknown type {other:?}: expected f16, bf16 or f32"),
        }),
    }
}

fn class_names(loaded: &LoadedModel) -> Option<Vec<String>> {
    loaded.model.config().class_names()
}

fn max_abs_difference(a: &Tensor, b: &Tensor) -> Result<f64> {
    let difference = (a - b)?.abs()?.flatten_all()?.max(0)?;
    Ok(difference.to_scalar::<f32>()? as f64)
}

/// Runs `before` and `after` on the first `limit` sequences of `check_data` and reports the
/// largest differences.
fn compare(
    before: &LoadedModel,
    after: &LoadedModel,
    check_data: &Path,
    limit: usize,
    dtype: &str,
) -> Result<ConversionCheck> {
    let device = before.model.device();
    let mut check = ConversionCheck {
        dtype: dtype.to_string(),
        sequences: 0,
        max_logit_difference: 0.0,
        max_hidden_difference: 0.0,
        max_probability_difference: None,
    };
    let is_classifier = matches!(
        before.model.head_kind(),
        HeadKind::SequenceClassification { .. }
    );
    let examples = open_sequences(check_data, &TableColumns::default())?.take(limit);
    let options = BatchOptions::default();
    run_batches(
        &before.tokenizer,
        device,
        examples,
        &options,
        |prepared| {
            let a = before.model.forward(&prepared.batch, &Hooks::none())?;
            let b = after.model.forward(&prepared.batch, &Hooks::none())?;
            check.max_hidden_difference = check.max_hidden_difference.max(max_abs_difference(
                &a.last_hidden_state,
                &b.last_hidden_state,
            )?);
            if let (Some(x), Some(y)) = (&a.logits, &b.logits) {
                check.max_logit_difference =
                    check.max_logit_difference.max(max_abs_difference(x, y)?);
                if is_classifier {
                    let p = candle_nn::ops::softmax(x, 1)?;
                    let q = candle_nn::ops::softmax(y, 1)?;
                    let worst = max_abs_difference(&p, &q)?;
                    check.max_probability_difference =
                        Some(check.max_probability_difference.unwrap_or(0.0).max(worst));
                }
            }
            check.sequences += prepared.len();
            Ok(vec![(); prepared.len()])
        },
        |_, ()| Ok(()),
    )?;
    if check.sequences == 0 {
        return Err(GenolensError::Data {
            path: check_data.to_path_buf(),
            line: 0,
            message: "no sequences to compare the converted model on".into(),
        });
    }
    Ok(check)
}

fn card_section(check: &ConversionCheck, source: &Path) -> String {
    let mut text = format!(
        "\n## Stored as {}\n\nThe weights were trained in f32 and stored as {} (`genolens convert --model {}`); \
         the loader computes in f32. On {} sequences the largest differences from the f32 weights are \
         {:.2e} (logits) and {:.2e} (last hidden state)",
        check.dtype,
        check.dtype,
        source.display(),
        check.sequences,
        check.max_logit_difference,
        check.max_hidden_difference
    );
    if let Some(p) = check.max_probability_difference {
        text.push_str(&format!(" and {p:.2e} (P(label 1))"));
    }
    text.push_str(".\n");
    text
}

/// Writes `input`'s model into `out` with its weights as `dtype` (config.json, vocab.txt, the
/// card and the training log are copied), then compares the two on `check_data` and appends the
/// result to `out/MODEL.md`.
pub fn run_convert(
    input: &Path,
    out: &Path,
    dtype: DType,
    check_data: &Path,
    limit: usize,
) -> Result<ConversionCheck> {
    if input.canonicalize().ok() == out.canonicalize().ok() && out.exists() {
        return Err(GenolensError::Config {
            path: out.to_path_buf(),
            message: "convert writes a new folder: --out must differ from --model".into(),
        });
    }
    let options = LoadOptions::default();
    let before = load_dir(input, &input.display().to_string(), &options)?;
    let labels = class_names(&before);
    save_model_as(
        out,
        &before.model,
        &before.tokenizer.kmer("convert")?.vocab,
        labels.as_deref(),
        dtype,
    )?;
    for file in ["log.tsv", "MODEL.md"] {
        let from = input.join(file);
        if from.is_file() {
            std::fs::copy(&from, out.join(file)).map_err(|e| GenolensError::io(&from, e))?;
        }
    }
    let after = load_dir(out, &out.display().to_string(), &options)?;
    let check = compare(&before, &after, check_data, limit, dtype.as_str())?;
    append_to_card(out, &card_section(&check, input))?;
    Ok(check)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_copy_loads_and_is_close() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("half");
        let check = run_convert(
            Path::new("tests/fixtures/models/tiny-cls-k6"),
            &out,
            DType::F16,
            Path::new("tests/fixtures/sequences.fa"),
            8,
        )
        .unwrap();
        assert!(check.sequences > 0);
        // Rounding to f16 moves weights by ≤ 2^-11 relative: the outputs move, a little.
        assert!(check.max_logit_difference > 0.0);
        assert!(check.max_logit_difference < 1e-2, "{check:?}");
        assert!(check.max_probability_difference.is_some());
        let card = std::fs::read_to_string(out.join("MODEL.md")).unwrap();
        assert!(card.contains("## Stored as f16"), "{card}");
        let stored = candle_core::safetensors::load(
            out.join("model.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        assert!(stored.values().all(|t| t.dtype() == DType::F16));
    }

    #[test]
    fn same_folder_and_unknown_types_are_refused() {
        let model = Path::new("tests/fixtures/models/tiny-cls-k6");
        let err = run_convert(model, model, DType::F16, Path::new("x.fa"), 1).unwrap_err();
        assert!(err.to_string().contains("must differ"), "{err}");
        assert!(parse_dtype("f8")
            .unwrap_err()
            .to_string()
            .contains("f16, bf16 or f32"));
    }
}
