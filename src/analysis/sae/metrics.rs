//! Reconstruction and sparsity metrics of an SAE on a set of activations.

use candle_core::{Tensor, D};

use crate::analysis::sae::model::Sae;
use crate::error::Result;

/// Metrics over a set of rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SaeMetrics {
    /// Mean number of active latents per row.
    pub l0: f64,
    /// Fraction of latents that never fire on these rows.
    pub dead_fraction: f64,
    /// Mean squared error per element.
    pub mse: f64,
    /// 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² (x̄ the mean row): the variance of the whole set explained.
    pub explained_variance: f64,
    /// Mean over rows of 1 − ‖x − x̂‖² / ‖x‖²: the per-row share of the squared norm explained
    /// (no centring; what some SAE code calls explained variance).
    pub explained_norm: f64,
}

/// Metrics of `sae` on `x` [n, d_in].
pub fn metrics(sae: &Sae, x: &Tensor) -> Result<SaeMetrics> {
    let f = sae.encode(x)?;
    let x_hat = sae.decode(&f)?;
    let active = f.gt(0.0)?.to_dtype(candle_core::DType::F32)?;
    let l0 = active.sum(D::Minus1)?.mean_all()?.to_scalar::<f32>()? as f64;
    let fired = active.max(0)?.to_vec1::<f32>()?;
    let dead = fired.iter().filter(|&&v| v == 0.0).count() as f64 / fired.len().max(1) as f64;
    let residual = (&x_hat - x)?.sqr()?;
    let mse = residual.mean_all()?.to_scalar::<f32>()? as f64;
    let residual_rows = residual.sum(D::Minus1)?;
    let centred = x.broadcast_sub(&x.mean_keepdim(0)?)?.sqr()?.sum_all()?;
    let explained_variance = 1.0
        - residual_rows.sum_all()?.to_scalar::<f32>()? as f64
            / (centred.to_scalar::<f32>()? as f64).max(f64::MIN_POSITIVE);
    let norms = x.sqr()?.sum(D::Minus1)?;
    let per_row = (residual_rows / norms.clamp(1e-12, f64::MAX)?)?;
    let explained_norm = 1.0 - per_row.mean_all()?.to_scalar::<f32>()? as f64;
    Ok(SaeMetrics {
        l0,
        dead_fraction: dead,
        mse,
        explained_variance,
        explained_norm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::sae::model::Architecture;
    use candle_core::Device;

    #[test]
    fn a_perfect_identity_explains_everything() {
        // d_sae = d_in = 3, W_enc = W_dec = I: ReLU passes positive rows through unchanged.
        let sae = Sae::new(3, 3, Architecture::ReluL1 { l1: 0.0 }, 0).unwrap();
        let eye = Tensor::eye(3, candle_core::DType::F32, &Device::Cpu).unwrap();
        sae.w_enc.set(&eye).unwrap();
        sae.w_dec.set(&eye).unwrap();
        let x = Tensor::new(&[[1f32, 0.0, 2.0], [0.5, 3.0, 0.0]], &Device::Cpu).unwrap();
        let m = metrics(&sae, &x).unwrap();
        assert!(m.mse < 1e-12 && (m.explained_variance - 1.0).abs() < 1e-6);
        assert!((m.explained_norm - 1.0).abs() < 1e-6);
        assert!((m.l0 - 2.0).abs() < 1e-9);
        assert_eq!(m.dead_fraction, 0.0);
    }
}
