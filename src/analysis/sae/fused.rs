//! One SAE training step on the CPU with hand-written gradients: four GEMMs forward and five
//! backward on plain f32 buffers, Adam fused into one pass per parameter. It computes the same
//! loss and gradients as candle's autograd on [`Sae`](super::model::Sae)'s graph (tested to
//! agree), without the graph: no tensor is allocated per operation.
//!
//! With x [B, d], W_enc [d, m], W_dec [m, d]:
//! P = (x − b_dec) W_enc + b_enc, F = act(P), x̂ = F W_dec + b_dec, R = x̂ − x,
//! L = Σ R² / B + penalty (+ AuxK). G = 2R / B; ∂W_dec = Fᵀ G; ∂F = G W_decᵀ (+ λ ∂penalty);
//! ∂P = ∂F ⊙ [F > 0]; ∂W_enc = (x − b_dec)ᵀ ∂P; ∂b_enc = Σ_b ∂P; ∂b_dec = Σ_b G − W_enc ∂b_enc.

use crate::analysis::sae::model::Architecture;
use crate::ops::matmul::{self, Threads, View, ViewMut};

/// `out` (m × n, row-major) = (or += when `accumulate`) op(a) · op(b), where op(a) is m × k
/// (stored k × m when `a_t`) and op(b) is k × n (stored n × k when `b_t`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_into(
    out: &mut [f32],
    (m, n, k): (usize, usize, usize),
    a: &[f32],
    a_t: bool,
    b: &[f32],
    b_t: bool,
    accumulate: bool,
) {
    assert!(out.len() >= m * n && a.len() >= m * k && b.len() >= k * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out[..m * n].fill(0.0);
        }
        return;
    }
    let (a_rs, a_cs) = if a_t {
        (1, m as isize)
    } else {
        (k as isize, 1)
    };
    let (b_rs, b_cs) = if b_t {
        (1, k as isize)
    } else {
        (n as isize, 1)
    };
    let threads = if m * n * k >= 1 << 20 {
        Threads::Pool
    } else {
        Threads::Caller
    };
    // SAFETY: the asserts above bound every index the strides reach: out is m × n with row
    // stride n; a is read at i·a_rs + l·a_cs < m·k; b at l·b_rs + j·b_cs < k·n.
    unsafe {
        matmul::product(
            m,
            n,
            k,
            ViewMut::rows(out.as_mut_ptr(), n),
            accumulate,
            View {
                ptr: a.as_ptr(),
                row_stride: a_rs,
                col_stride: a_cs,
            },
            View {
                ptr: b.as_ptr(),
                row_stride: b_rs,
                col_stride: b_cs,
            },
            1.0,
            threads,
        );
    }
}

/// The constants of one Adam step.
struct AdamConstants {
    b1: f32,
    b2: f32,
    /// Bias corrections 1 − βᵗ.
    c1: f32,
    c2: f32,
    lr: f32,
    eps: f32,
}

crate::simd_dispatch! {
/// Adam's update of one chunk, compiled per vector unit (the same bits in each).
fn adam_chunk(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: &AdamConstants) {
    let AdamConstants { b1, b2, c1, c2, lr, eps } = *c;
    for (((p, g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        *m = b1 * *m + (1.0 - b1) * g;
        *v = b2 * *v + (1.0 - b2) * g * g;
        let m_hat = *m / c1;
        let v_hat = *v / c2;
        *p -= lr * m_hat / (v_hat.sqrt() + eps);
    }
}
}

/// Adam's state of one parameter.
#[derive(Debug, Clone)]
struct Moments {
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Moments {
    fn new(n: usize) -> Self {
        Moments {
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    /// One Adam step (β 0.9, 0.999, ε 1e-8, bias-corrected; candle's and PyTorch's formula),
    /// in parallel chunks (memory-bound: the parameters, gradient and moments are read once).
    fn step(&mut self, param: &mut [f32], grad: &[f32], lr: f64, t: i32) {
        let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        let c1 = 1.0 - b1.powi(t);
        let c2 = 1.0 - b2.powi(t);
        let lr = lr as f32;
        let constants = AdamConstants {
            b1,
            b2,
            c1,
            c2,
            lr,
            eps,
        };
        crate::train::adamw::for_each_chunk(param, grad, &mut self.m, &mut self.v, |p, g, m, v| {
            adam_chunk(p, g, m, v, &constants)
        });
    }
}

/// Parameters, Adam state and scratch buffers of a fused trainer.
pub(crate) struct Fused {
    pub d: usize,
    pub m: usize,
    pub w_enc: Vec<f32>,
    pub b_enc: Vec<f32>,
    pub w_dec: Vec<f32>,
    pub b_dec: Vec<f32>,
    moments: [Moments; 4],
    t: i32,
    // scratch
    xc: Vec<f32>,
    p: Vec<f32>,
    f: Vec<f32>,
    r: Vec<f32>,
    df: Vec<f32>,
    g_enc: Vec<f32>,
    g_dec: Vec<f32>,
    g_benc: Vec<f32>,
    g_bdec: Vec<f32>,
    aux: Vec<f32>,
    aux_r: Vec<f32>,
    scratch: Vec<f32>,
}

/// What one step measured.
pub(crate) struct StepOut {
    /// Total loss.
    pub loss: f64,
    /// Σ‖x − x̂‖².
    pub squared_error: f64,
    /// Active latents summed over rows.
    pub active: usize,
    /// Which latents fired in the batch.
    pub fired: Vec<bool>,
    /// Smallest kept activation (BatchTopK threshold update), +∞ when none.
    pub min_kept: f32,
}

/// AuxK inputs of a step: which latents are dead, how many each row may use, and the weight.
pub(crate) struct Aux {
    pub dead: Vec<bool>,
    pub k: usize,
    pub weight: f64,
}

impl Fused {
    pub fn new(w_enc: Vec<f32>, b_enc: Vec<f32>, w_dec: Vec<f32>, b_dec: Vec<f32>) -> Self {
        let (d, m) = (b_dec.len(), b_enc.len());
        Fused {
            d,
            m,
            moments: [
                Moments::new(d * m),
                Moments::new(m),
                Moments::new(m * d),
                Moments::new(d),
            ],
            w_enc,
            b_enc,
            w_dec,
            b_dec,
            t: 0,
            xc: Vec::new(),
            p: Vec::new(),
            f: Vec::new(),
            r: Vec::new(),
            df: Vec::new(),
            g_enc: vec![0.0; d * m],
            g_dec: vec![0.0; m * d],
            g_benc: vec![0.0; m],
            g_bdec: vec![0.0; d],
            aux: Vec::new(),
            aux_r: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Forward: P and F for `x` [rows, d] (F's selection as the architecture makes it).
    fn forward(&mut self, x: &[f32], rows: usize, architecture: Architecture) {
        let (d, m) = (self.d, self.m);
        self.xc.clear();
        for row in x.chunks_exact(d) {
            self.xc
                .extend(row.iter().zip(&self.b_dec).map(|(a, b)| a - b));
        }
        self.p.clear();
        for _ in 0..rows {
            self.p.extend_from_slice(&self.b_enc);
        }
        gemm_into(
            &mut self.p,
            (rows, m, d),
            &self.xc,
            false,
            &self.w_enc,
            false,
            true,
        );
        self.f.clear();
        self.f.extend(self.p.iter().map(|&v| v.max(0.0)));
        match architecture {
            Architecture::TopK { k } => {
                let k = k.clamp(1, m);
                for (prow, frow) in self.p.chunks_exact(m).zip(self.f.chunks_exact_mut(m)) {
                    self.scratch.clear();
                    self.scratch.extend_from_slice(prow);
                    let cut = kth_largest(&mut self.scratch, k);
                    for (fv, &pv) in frow.iter_mut().zip(prow) {
                        if pv < cut {
                            *fv = 0.0;
                        }
                    }
                }
            }
            Architecture::BatchTopK { k } => {
                let keep = (k * rows).clamp(1, self.f.len());
                self.scratch.clear();
                self.scratch.extend_from_slice(&self.f);
                let cut = kth_largest(&mut self.scratch, keep);
                for fv in self.f.iter_mut() {
                    if *fv < cut {
                        *fv = 0.0;
                    }
                }
            }
            _ => {}
        }
    }

    /// One training step on `x` [rows, d]: loss, gradients, Adam at `lr`; `l1_weight` is λ × the
    /// warm-up factor; `aux` is called with the batch's firing to give AuxK's dead latents.
    pub fn step(
        &mut self,
        x: &[f32],
        rows: usize,
        architecture: Architecture,
        l1_weight: f64,
        lr: f64,
        aux: impl FnOnce(&[bool]) -> Option<Aux>,
    ) -> StepOut {
        let (d, m) = (self.d, self.m);
        self.forward(x, rows, architecture);
        let mut fired = vec![false; m];
        let mut active = 0usize;
        let mut min_kept = f32::INFINITY;
        for row in self.f.chunks_exact(m) {
            for (i, &v) in row.iter().enumerate() {
                if v > 0.0 {
                    fired[i] = true;
                    active += 1;
                    min_kept = min_kept.min(v);
                }
            }
        }
        // x̂ and the residual R = x̂ − x.
        self.r.clear();
        for _ in 0..rows {
            self.r.extend_from_slice(&self.b_dec);
        }
        gemm_into(
            &mut self.r,
            (rows, d, m),
            &self.f,
            false,
            &self.w_dec,
            false,
            true,
        );
        let mut squared_error = 0f64;
        for (r, &xv) in self.r.iter_mut().zip(x) {
            *r -= xv;
            squared_error += (*r as f64) * (*r as f64);
        }
        let batch = rows as f64;
        let mut loss = squared_error / batch;
        // G = 2R/B (kept in r's buffer as a scaled copy).
        let scale = (2.0 / batch) as f32;
        let g: Vec<f32> = self.r.iter().map(|&v| v * scale).collect();
        gemm_into(
            &mut self.g_dec,
            (m, d, rows),
            &self.f,
            true,
            &g,
            false,
            false,
        );
        self.df.resize(rows * m, 0.0);
        gemm_into(
            &mut self.df,
            (rows, m, d),
            &g,
            false,
            &self.w_dec,
            true,
            false,
        );
        // The penalty's gradients and ∂P = ∂F where the latent is kept and positive, one pass.
        let w = (l1_weight / batch) as f32;
        match architecture {
            Architecture::ReluL1 { .. } => {
                use rayon::prelude::*;
                let norms: Vec<f32> = self
                    .w_dec
                    .par_chunks_exact(d)
                    .map(|row| row.iter().map(|v| v * v).sum::<f32>().sqrt())
                    .collect();
                let mut column_sums = vec![0f32; m];
                let mut penalty = 0f64;
                for (frow, dfrow) in self.f.chunks_exact(m).zip(self.df.chunks_exact_mut(m)) {
                    for i in 0..m {
                        let fv = frow[i];
                        if fv > 0.0 {
                            dfrow[i] += w * norms[i];
                            column_sums[i] += fv;
                            penalty += (fv * norms[i]) as f64;
                        } else {
                            dfrow[i] = 0.0;
                        }
                    }
                }
                loss += l1_weight * penalty / batch;
                self.g_dec
                    .par_chunks_exact_mut(d)
                    .zip(self.w_dec.par_chunks_exact(d))
                    .enumerate()
                    .for_each(|(i, (grow, wrow))| {
                        if norms[i] > 0.0 && column_sums[i] != 0.0 {
                            let c = w * column_sums[i] / norms[i];
                            grow.iter_mut()
                                .zip(wrow)
                                .for_each(|(gv, &wv)| *gv += c * wv);
                        }
                    });
            }
            Architecture::ReluL1UnitNorm { .. } => {
                let mut total = 0f64;
                for (dv, &fv) in self.df.iter_mut().zip(&self.f) {
                    if fv > 0.0 {
                        *dv += w;
                        total += fv as f64;
                    } else {
                        *dv = 0.0;
                    }
                }
                loss += l1_weight * total / batch;
            }
            _ => {
                for (dv, &fv) in self.df.iter_mut().zip(&self.f) {
                    if fv <= 0.0 {
                        *dv = 0.0;
                    }
                }
            }
        }
        if let Some(aux) = aux(&fired) {
            loss += self.aux_k(&aux, rows);
        }
        gemm_into(
            &mut self.g_enc,
            (d, m, rows),
            &self.xc,
            true,
            &self.df,
            false,
            false,
        );
        self.g_benc.fill(0.0);
        for row in self.df.chunks_exact(m) {
            self.g_benc.iter_mut().zip(row).for_each(|(a, &b)| *a += b);
        }
        self.g_bdec.fill(0.0);
        for row in g.chunks_exact(d) {
            self.g_bdec.iter_mut().zip(row).for_each(|(a, &b)| *a += b);
        }
        {
            use rayon::prelude::*;
            let g_benc = &self.g_benc;
            self.g_bdec
                .par_iter_mut()
                .zip(self.w_enc.par_chunks_exact(m))
                .for_each(|(gb, wrow)| {
                    *gb -= wrow.iter().zip(g_benc).map(|(a, b)| a * b).sum::<f32>();
                });
        }
        self.t += 1;
        let t = self.t;
        self.moments[0].step(&mut self.w_enc, &self.g_enc, lr, t);
        self.moments[1].step(&mut self.b_enc, &self.g_benc, lr, t);
        self.moments[2].step(&mut self.w_dec, &self.g_dec, lr, t);
        self.moments[3].step(&mut self.b_dec, &self.g_bdec, lr, t);
        if architecture.unit_decoder() {
            for row in self.w_dec.chunks_exact_mut(d) {
                let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                row.iter_mut().for_each(|v| *v /= norm);
            }
        }
        StepOut {
            loss,
            squared_error,
            active,
            fired,
            min_kept,
        }
    }

    /// AuxK: the top `aux.k` dead pre-activations of each row, ReLU'd, reconstruct −R; adds its
    /// gradients to ∂W_dec and ∂P; returns its loss.
    fn aux_k(&mut self, aux: &Aux, rows: usize) -> f64 {
        let dead = aux.dead.as_slice();
        let (d, m) = (self.d, self.m);
        self.aux.clear();
        self.aux.resize(rows * m, 0.0);
        for (prow, arow) in self.p.chunks_exact(m).zip(self.aux.chunks_exact_mut(m)) {
            self.scratch.clear();
            self.scratch
                .extend(prow.iter().zip(dead).filter(|(_, &dd)| dd).map(|(&v, _)| v));
            if self.scratch.is_empty() {
                continue;
            }
            let take = aux.k.min(self.scratch.len()).max(1);
            let cut = kth_largest(&mut self.scratch, take);
            for ((a, &pv), &dd) in arow.iter_mut().zip(prow).zip(dead) {
                if dd && pv >= cut && pv > 0.0 {
                    *a = pv;
                }
            }
        }
        // Ra = z W_dec + R.
        self.aux_r.clear();
        self.aux_r.extend_from_slice(&self.r);
        gemm_into(
            &mut self.aux_r,
            (rows, d, m),
            &self.aux,
            false,
            &self.w_dec,
            false,
            true,
        );
        let batch = rows as f64;
        let loss = aux.weight
            * self
                .aux_r
                .iter()
                .map(|&v| (v as f64) * (v as f64))
                .sum::<f64>()
            / batch;
        let scale = (2.0 * aux.weight / batch) as f32;
        self.aux_r.iter_mut().for_each(|v| *v *= scale);
        gemm_into(
            &mut self.g_dec,
            (m, d, rows),
            &self.aux,
            true,
            &self.aux_r,
            false,
            true,
        );
        self.scratch.clear();
        self.scratch.resize(rows * m, 0.0);
        gemm_into(
            &mut self.scratch,
            (rows, m, d),
            &self.aux_r,
            false,
            &self.w_dec,
            true,
            false,
        );
        for ((dv, &sv), &av) in self.df.iter_mut().zip(&self.scratch).zip(&self.aux) {
            if av > 0.0 {
                *dv += sv;
            }
        }
        loss
    }
}

/// The k-th largest value (1-based) of `values` (reordered); NaN sorts lowest.
pub(crate) fn kth_largest(values: &mut [f32], k: usize) -> f32 {
    let (_, kth, _) = values.select_nth_unstable_by(k - 1, |a, b| {
        b.partial_cmp(a)
            .unwrap_or_else(|| a.is_nan().cmp(&b.is_nan()))
    });
    *kth
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_into_handles_transposes() {
        // a = [[1,2,3],[4,5,6]] (2×3), b = [[1,0],[0,1],[1,1]] (3×2).
        let a = [1f32, 2., 3., 4., 5., 6.];
        let b = [1f32, 0., 0., 1., 1., 1.];
        let mut out = [0f32; 4];
        gemm_into(&mut out, (2, 2, 3), &a, false, &b, false, false);
        assert_eq!(out, [4., 5., 10., 11.]);
        // aᵀ stored: at = [[1,4],[2,5],[3,6]] read transposed.
        let at = [1f32, 4., 2., 5., 3., 6.];
        let bt = [1f32, 0., 1., 0., 1., 1.];
        let mut again = [1f32; 4];
        gemm_into(&mut again, (2, 2, 3), &at, true, &bt, true, true);
        assert_eq!(again, [5., 6., 11., 12.]);
    }
}
