//! Dropout for fine-tuning at HF BERT's sites, as hook interventions: the embeddings' output
//! (`blocks.0.hook_resid_pre`), the attention probabilities (`attn.hook_pattern`), the attention
//! and MLP outputs before their residual add (`hook_attn_out`, `hook_mlp_out`) and the pooled
//! output before the classifier (`hook_pooled`). Why hooks: the model has no training mode, and
//! the same forward pass serves every study. Masks come from ChaCha streams keyed by (seed, step,
//! site), so a run is reproducible and its masks do not depend on anything else drawn.

use std::sync::Arc;

use candle_core::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::model::{BlockSite, HookPoint, Hooks, Intervention};

/// Hooks applying inverted dropout with probability `rate` at every site, for optimiser step
/// `step`. `rate` 0 gives no hooks (the plain forward pass).
pub fn dropout_hooks(rate: f64, seed: u64, step: usize, layers: usize) -> Hooks {
    let mut hooks = Hooks::none();
    if rate <= 0.0 {
        return hooks;
    }
    let mut sites = vec![HookPoint::block(0, BlockSite::ResidPre), HookPoint::Pooled];
    for layer in 0..layers {
        for site in [BlockSite::Pattern, BlockSite::AttnOut, BlockSite::MlpOut] {
            sites.push(HookPoint::block(layer, site));
        }
    }
    let streams_per_step = sites.len() as u64;
    for (index, point) in sites.into_iter().enumerate() {
        let stream = step as u64 * streams_per_step + index as u64;
        let drop = Arc::new(move |x: &Tensor| dropout(x, rate, seed, stream));
        hooks = hooks.intervene(point, Intervention::Custom(drop));
    }
    hooks
}

/// x with each element zeroed with probability `rate` and the rest scaled by 1 / (1 − rate).
fn dropout(x: &Tensor, rate: f64, seed: u64, stream: u64) -> candle_core::Result<Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let keep = 1.0 - rate;
    let scale = (1.0 / keep) as f32;
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| {
            if rng.random::<f64>() < keep {
                scale
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, x.dims(), x.device())?.to_dtype(x.dtype())?;
    x * mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn drops_about_the_rate_scales_the_rest_and_repeats_for_the_same_stream() {
        let x = Tensor::ones((200, 100), candle_core::DType::F32, &Device::Cpu).unwrap();
        let dropped: Vec<f32> = dropout(&x, 0.1, 3, 7)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let zeros = dropped.iter().filter(|v| **v == 0.0).count();
        assert!((1700..2300).contains(&zeros), "{zeros} of 20000 dropped");
        assert!(dropped
            .iter()
            .all(|v| *v == 0.0 || (*v - 1.0 / 0.9).abs() < 1e-6));
        let again: Vec<f32> = dropout(&x, 0.1, 3, 7)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(dropped, again);
        let other: Vec<f32> = dropout(&x, 0.1, 3, 8)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_ne!(dropped, other, "another stream, another mask");
    }

    #[test]
    fn the_gradient_flows_through_kept_elements_only() {
        let x = Var::new(&[[1f32, 2.0, 3.0, 4.0]; 50], &Device::Cpu).unwrap();
        let y = dropout(x.as_tensor(), 0.5, 1, 0).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        let gradient: Vec<f32> = grads
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let kept: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        for (g, v) in gradient.iter().zip(&kept) {
            assert_eq!(*g, if *v == 0.0 { 0.0 } else { 2.0 });
        }
    }

    #[test]
    fn rate_zero_adds_no_hooks_and_a_rate_covers_every_site() {
        assert!(dropout_hooks(0.0, 1, 0, 6).is_empty());
        let hooks = dropout_hooks(0.1, 1, 0, 6);
        assert!(hooks.is_intervened(HookPoint::Pooled));
        assert!(hooks.is_intervened(HookPoint::block(5, BlockSite::MlpOut)));
        assert!(hooks.is_intervened(HookPoint::block(0, BlockSite::ResidPre)));
        assert!(!hooks.is_intervened(HookPoint::block(1, BlockSite::ResidPre)));
    }
}
