//! Reconstruction and sparsity metrics of an SAE on a set of activations.

use candle_core::{DType, D};

use crate::analysis::sae::cache::RowSource;

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

/// Metrics of `sae` on every row of `source` (streamed shard by shard, 4096 rows at a time).
pub fn metrics(sae: &Sae, source: &dyn RowSource) -> Result<SaeMetrics> {
    let d_in = source.d_in();
    let mut fired = vec![false; sae.d_sae()];
    let (mut rows, mut l0, mut squared_error, mut squared_norm, mut per_row) =
        (0usize, 0f64, 0f64, 0f64, 0f64);
    let mut sum = vec![0f64; d_in];
    for s in 0..source.shards() {
        let shard = source.shard(s)?;
        let n = shard.dim(0)?;
        let mut start = 0;
        while start < n {
            let len = 4096.min(n - start);
            let x = shard.narrow(0, start, len)?;
            start += len;
            let f = sae.encode(&x)?;
            let x_hat = sae.decode(&f)?;
            let active = f.gt(0.0)?.to_dtype(DType::F32)?;
            l0 += active.sum_all()?.to_scalar::<f32>()? as f64;
            for (seen, v) in fired.iter_mut().zip(active.max(0)?.to_vec1::<f32>()?) {
                *seen |= v > 0.0;
            }
            let residual_rows = (&x_hat - &x)?.sqr()?.sum(D::Minus1)?.to_vec1::<f32>()?;
            let norms = x.sqr()?.sum(D::Minus1)?.to_vec1::<f32>()?;
            for (r, norm) in residual_rows.iter().zip(&norms) {
                squared_error += *r as f64;
                squared_norm += *norm as f64;
                per_row += *r as f64 / (*norm as f64).max(1e-12);
            }
            for (a, b) in sum.iter_mut().zip(x.sum(0)?.to_vec1::<f32>()?) {
                *a += b as f64;
            }
            rows += len;
        }
    }
    let n = rows.max(1) as f64;
    let mean_norm: f64 = sum.iter().map(|s| (s / n) * (s / n)).sum();
    let total = squared_norm - n * mean_norm;
    Ok(SaeMetrics {
        l0: l0 / n,
        dead_fraction: fired.iter().filter(|&&f| !f).count() as f64 / fired.len().max(1) as f64,
        mse: squared_error / (n * d_in.max(1) as f64),
        explained_variance: 1.0 - squared_error / total.max(f64::MIN_POSITIVE),
        explained_norm: 1.0 - per_row / n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::sae::model::Architecture;
    use candle_core::{Device, Tensor};

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
