//! SAELens's on-disk layout (sae-lens 6.x `SAE.load_from_disk`): `sae_weights.safetensors` with
//! `W_enc` [d_in, d_sae], `b_enc`, `W_dec` [d_sae, d_in], `b_dec` (strict names), and `cfg.json`
//! with `d_in`, `d_sae`, `dtype`, `architecture` (`standard` = ReLU, `topk` with `k`),
//! `apply_b_dec_to_input` true, `normalize_activations` "none" (a normalisation factor is folded
//! into the weights before saving, as SAELens's trainer does) and `metadata.sae_lens_version`
//! ≥ 6 (else SAELens takes its legacy-config path) with `hook_name`.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, Var};

use crate::analysis::sae::model::{Architecture, Sae};
use crate::error::{GenolensError, Result};

/// The SAELens version whose config layout is written.
pub const SAE_LENS_VERSION: &str = "6.18.0";

/// Writes `sae` to `dir` in SAELens's layout; `hook_name` is the genolens hook it was trained on.
pub fn save(sae: &Sae, dir: &Path, hook_name: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| GenolensError::io(dir, e))?;
    let tensors: HashMap<String, Tensor> = [
        ("W_enc", sae.w_enc.as_tensor().clone()),
        ("b_enc", sae.b_enc.as_tensor().clone()),
        ("W_dec", sae.w_dec.as_tensor().clone()),
        ("b_dec", sae.b_dec.as_tensor().clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    candle_core::safetensors::save(&tensors, dir.join("sae_weights.safetensors"))?;
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
    match sae.architecture {
        Architecture::ReluL1 { .. } => cfg["architecture"] = "standard".into(),
        Architecture::TopK { k } => {
            cfg["architecture"] = "topk".into();
            cfg["k"] = k.into();
            cfg["rescale_acts_by_decoder_norm"] = false.into();
        }
    }
    let path = dir.join("cfg.json");
    crate::report::atomic::write_atomic(&path, cfg.to_string().as_bytes())
}

/// Reads an SAE saved in SAELens's layout (`standard` or `topk`); errors name the file and key.
pub fn load(dir: &Path) -> Result<(Sae, String)> {
    let cfg_path = dir.join("cfg.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| GenolensError::io(&cfg_path, e))?;
    let bad = |message: String| GenolensError::Data {
        path: cfg_path.clone(),
        line: 0,
        message,
    };
    let cfg: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let architecture = match cfg["architecture"].as_str() {
        Some("standard") => Architecture::ReluL1 { l1: 0.0 },
        Some("topk") => Architecture::TopK {
            k: cfg["k"]
                .as_u64()
                .ok_or_else(|| bad("architecture topk without an integer `k`".into()))?
                as usize,
        },
        other => {
            return Err(bad(format!(
                "architecture {other:?}: genolens reads `standard` and `topk`"
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
    let sae = Sae {
        w_enc: take("W_enc")?,
        b_enc: take("b_enc")?,
        w_dec: take("W_dec")?,
        b_dec: take("b_dec")?,
        architecture,
    };
    let (d_in, d_sae) = sae.w_enc.as_tensor().dims2()?;
    if cfg["d_in"].as_u64() != Some(d_in as u64) || cfg["d_sae"].as_u64() != Some(d_sae as u64) {
        return Err(bad(format!(
            "d_in/d_sae {}/{} disagree with W_enc's shape [{d_in}, {d_sae}]",
            cfg["d_in"], cfg["d_sae"]
        )));
    }
    Ok((sae, hook))
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
        ] {
            let sae = Sae::new(8, 16, architecture, 4).unwrap();
            save(&sae, dir.path(), "hook_cls").unwrap();
            let (again, hook) = load(dir.path()).unwrap();
            assert_eq!(hook, "hook_cls");
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
