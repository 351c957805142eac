//! SAELens's on-disk layout (sae-lens 6.x `SAE.load_from_disk`): `sae_weights.safetensors` with
//! `W_enc` [d_in, d_sae], `b_enc`, `W_dec` [d_sae, d_in], `b_dec` (strict names), and `cfg.json`
//! with `d_in`, `d_sae`, `dtype`, `architecture` (`standard` = ReLU, `topk` with `k`,
//! `jumprelu` with a `threshold` tensor = BatchTopK at inference, as SAELens saves it),
//! `apply_b_dec_to_input` true, `normalize_activations` "none" (a normalisation factor is folded
//! into the weights before saving, as SAELens's trainer does) and `metadata.sae_lens_version`
//! ≥ 6 (else SAELens takes its legacy-config path) with `hook_name`. A top-level `genolens` block
//! (dropped by SAELens, which ignores unknown keys) keeps what SAELens has no key for: the
//! genolens architecture name with its λ or k, the rows (cls/mean/tokens) and the folded factor.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, Var};

use crate::analysis::sae::model::{Architecture, Sae};
use crate::error::{GenolensError, Result};

/// The SAELens version whose config layout is written.
pub const SAE_LENS_VERSION: &str = "6.18.0";

/// Writes `sae` to `dir` in SAELens's layout; `hook_name` is the genolens hook it was trained
/// on; `extra` goes into the `genolens` block beside the architecture (rows, scale, ...).
pub fn save(sae: &Sae, dir: &Path, hook_name: &str, extra: serde_json::Value) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| GenolensError::io(dir, e))?;
    let mut tensors: HashMap<String, Tensor> = [
        ("W_enc", sae.w_enc.as_tensor().clone()),
        ("b_enc", sae.b_enc.as_tensor().clone()),
        ("W_dec", sae.w_dec.as_tensor().clone()),
        ("b_dec", sae.b_dec.as_tensor().clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Architecture::BatchTopK { .. } = sae.architecture {
        let threshold = sae.threshold.clone().ok_or_else(|| {
            GenolensError::argument(
                "sae",
                "a BatchTopK SAE is saved after training (it has no threshold yet)",
            )
        })?;
        tensors.insert("threshold".into(), threshold);
    }
    let weights = dir.join("sae_weights.safetensors");
    let temp = crate::report::atomic::temp_path(&weights);
    candle_core::safetensors::save(&tensors, &temp)?;
    std::fs::rename(&temp, &weights).map_err(|e| GenolensError::io(&weights, e))?;
    let (d_in, d_sae) = sae.w_enc.as_tensor().dims2()?;
    let mut cfg = serde_json::json!({
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": true,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": SAE_LENS_VERSION,
            "hook_name": hook_name,
            "model_class_name": "genolens",
        },
    });
    let mut genolens = serde_json::to_value(sae.architecture).expect("architecture serialises");
    if let (Some(block), Some(extra)) = (genolens.as_object_mut(), extra.as_object()) {
        block.extend(extra.clone());
    }
    cfg["genolens"] = genolens;
    match sae.architecture {
        Architecture::ReluL1 { .. } | Architecture::ReluL1UnitNorm { .. } => {
            cfg["architecture"] = "standard".into()
        }
        Architecture::TopK { k } => {
            cfg["architecture"] = "topk".into();
            cfg["k"] = k.into();
            cfg["rescale_acts_by_decoder_norm"] = false.into();
        }
        Architecture::BatchTopK { .. } => cfg["architecture"] = "jumprelu".into(),
    }
    let path = dir.join("cfg.json");
    crate::report::atomic::write_atomic(&path, cfg.to_string().as_bytes())
}

/// Reads an SAE saved in SAELens's layout (`standard`, `topk`, `jumprelu`); errors name the file
/// and key. Returns the SAE, its hook name and cfg.json (for the `genolens` block).
pub fn load(dir: &Path) -> Result<(Sae, String, serde_json::Value)> {
    let cfg_path = dir.join("cfg.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| GenolensError::io(&cfg_path, e))?;
    let bad = |message: String| GenolensError::Data {
        path: cfg_path.clone(),
        line: 0,
        message,
    };
    let cfg: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let ours = &cfg["genolens"];
    let l1 = ours["l1"].as_f64().unwrap_or(0.0);
    let architecture = match cfg["architecture"].as_str() {
        Some("standard") if ours["name"] == "relu-l1-unit" => Architecture::ReluL1UnitNorm { l1 },
        Some("standard") => Architecture::ReluL1 { l1 },
        Some("jumprelu") => Architecture::BatchTopK {
            k: ours["k"].as_u64().unwrap_or(0) as usize,
        },
        Some("topk") => Architecture::TopK {
            k: cfg["k"]
                .as_u64()
                .ok_or_else(|| bad("architecture topk without an integer `k`".into()))?
                as usize,
        },
        other => {
            return Err(bad(format!(
                "architecture {other:?}: genolens reads `standard`, `topk` and `jumprelu`"
            )))
        }
    };
    let hook = cfg["metadata"]["hook_name"]
        .as_str()
        .or_else(|| cfg["hook_name"].as_str())
        .unwrap_or_default()
        .to_string();
    let weights = dir.join("sae_weights.safetensors");
    let tensors = candle_core::safetensors::load(&weights, &Device::Cpu)?;
    let take = |name: &str| -> Result<Var> {
        let t = tensors.get(name).ok_or_else(|| GenolensError::Data {
            path: weights.clone(),
            line: 0,
            message: format!("no tensor `{name}` (expected W_enc, b_enc, W_dec, b_dec)"),
        })?;
        Ok(Var::from_tensor(&t.to_dtype(candle_core::DType::F32)?)?)
    };
    let threshold = match architecture {
        Architecture::BatchTopK { .. } => Some(take("threshold")?.as_tensor().clone()),
        _ => None,
    };
    let sae = Sae {
        w_enc: take("W_enc")?,
        b_enc: take("b_enc")?,
        w_dec: take("W_dec")?,
        b_dec: take("b_dec")?,
        architecture,
        threshold,
    };
    let (d_in, d_sae) = sae.w_enc.as_tensor().dims2()?;
    if cfg["d_in"].as_u64() != Some(d_in as u64) || cfg["d_sae"].as_u64() != Some(d_sae as u64) {
        return Err(bad(format!(
            "d_in/d_sae {}/{} disagree with W_enc's shape [{d_in}, {d_sae}]",
            cfg["d_in"], cfg["d_sae"]
        )));
    }
    if sae.w_dec.as_tensor().dims() != [d_sae, d_in]
        || sae.b_enc.as_tensor().dims() != [d_sae]
        || sae.b_dec.as_tensor().dims() != [d_in]
        || sae.threshold.as_ref().is_some_and(|t| t.dims() != [d_sae])
    {
        return Err(GenolensError::Data {
            path: weights,
            line: 0,
            message: format!("tensor shapes disagree with W_enc [{d_in}, {d_sae}] (W_dec [d_sae, d_in], b_enc [d_sae], b_dec [d_in], threshold [d_sae])"),
        });
    }
    Ok((sae, hook, cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_saes_load_with_the_same_encodings() {
        let dir = tempfile::tempdir().unwrap();
        for architecture in [
            Architecture::TopK { k: 3 },
            Architecture::ReluL1 { l1: 0.1 },
            Architecture::ReluL1UnitNorm { l1: 0.2 },
            Architecture::BatchTopK { k: 2 },
        ] {
            let mut sae = Sae::new(8, 16, architecture, 4).unwrap();
            if let Architecture::BatchTopK { .. } = architecture {
                assert!(save(&sae, dir.path(), "hook_cls", serde_json::json!({})).is_err());
                sae.threshold = Some(Tensor::full(0.3f32, 16, &Device::Cpu).unwrap());
            }
            save(
                &sae,
                dir.path(),
                "hook_cls",
                serde_json::json!({"rows": "none"}),
            )
            .unwrap();
            let (again, hook, cfg) = load(dir.path()).unwrap();
            assert_eq!(hook, "hook_cls");
            assert_eq!(again.architecture, architecture);
            assert_eq!(cfg["genolens"]["rows"], "none");
            let x = Tensor::randn(0f32, 1.0, (5, 8), &Device::Cpu).unwrap();
            let a = sae.encode(&x).unwrap().to_vec2::<f32>().unwrap();
            let b = again.encode(&x).unwrap().to_vec2::<f32>().unwrap();
            assert_eq!(a, b);
        }
        std::fs::write(dir.path().join("cfg.json"), "{\"architecture\": \"gated\"}").unwrap();
        let err = load(dir.path()).err().unwrap().to_string();
        assert!(err.contains("cfg.json") && err.contains("gated"), "{err}");
    }
}
