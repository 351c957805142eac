//! Every f32 matrix product of the fused CPU ops goes through [`product`]: the pure-Rust `gemm`
//! crate by default, or a BLAS library loaded at run time when `GENOLENS_BLAS` names one.
//!
//! Why both: the `gemm` crate's AVX-512 kernels lead on AMD Zen 5 (376–407 GF/s on two cores
//! against 209–257 for MKL and OpenBLAS called the same way), while on Intel Xeons MKL and
//! OpenBLAS had measured 139–293 GF/s where genolens's forward ran at about 165. A fresh clone
//! builds and runs with Rust alone; a faster BLAS is one documented step (README, *Speed*):
//!
//! ```text
//! GENOLENS_BLAS=libopenblas.so.0 genolens ...          # Debian: apt install libopenblas0-pthread
//! GENOLENS_BLAS=/path/to/libmkl_rt.so.3 genolens ...   # MKL from PyPI: pip install mkl
//! ```
//!
//! The library must export `cblas_sgemm` (OpenBLAS, BLIS, MKL's `libmkl_rt`; scipy-openblas's
//! `scipy_cblas_sgemm` is accepted too). It is asked to run single-threaded (MKL's sequential
//! layer, `openblas_set_num_threads(1)`, `bli_thread_set_num_threads(1)`) and genolens splits a
//! large product's rows (or columns) over its own rayon threads, so the thread count stays the
//! one `--threads`/`RAYON_NUM_THREADS` sets, products inside parallel tasks do not oversubscribe,
//! and a result depends only on the inputs and the thread count. Products whose operands the
//! CBLAS interface cannot describe (no unit stride) keep the `gemm` crate. A name that does not
//! load is an error at start-up ([`check_backend`]), never a silent fallback.

use std::sync::OnceLock;

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};

/// An f32 matrix in memory: its first element, row stride and column stride (in elements).
/// `P` is `*const f32` for an operand ([`View`]) or `*mut f32` for a destination ([`ViewMut`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Matrix<P> {
    pub ptr: P,
    pub row_stride: isize,
    pub col_stride: isize,
}

/// A matrix that is read.
pub(crate) type View = Matrix<*const f32>;
/// A matrix that is written.
pub(crate) type ViewMut = Matrix<*mut f32>;

// SAFETY: a view is an address; [`product`]'s contract (extents inside the buffers, dst written
// by nobody else) is what makes reading and writing through views from several threads sound.
unsafe impl<P> Send for Matrix<P> {}
unsafe impl<P> Sync for Matrix<P> {}

/// The two pointer kinds a [`Matrix`] holds.
pub(crate) trait Address: Copy {
    /// # Safety
    /// As `pointer::offset`: the result must stay inside the same buffer.
    unsafe fn plus(self, count: isize) -> Self;
}

impl Address for *const f32 {
    unsafe fn plus(self, count: isize) -> Self {
        // SAFETY: the caller's contract.
        unsafe { self.offset(count) }
    }
}

impl Address for *mut f32 {
    unsafe fn plus(self, count: isize) -> Self {
        // SAFETY: the caller's contract.
        unsafe { self.offset(count) }
    }
}

impl<P: Address> Matrix<P> {
    /// A row-major matrix with `row_stride` elements between rows.
    pub fn rows(ptr: P, row_stride: usize) -> Self {
        Matrix {
            ptr,
            row_stride: row_stride as isize,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix with `row_stride` elements between its rows.
    pub fn transposed(ptr: P, row_stride: usize) -> Self {
        Matrix {
            ptr,
            row_stride: 1,
            col_stride: row_stride as isize,
        }
    }

    /// The same elements read as the transpose.
    fn transpose(self) -> Self {
        Matrix {
            ptr: self.ptr,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// The address `offset` elements from the first (a method, so closures capture the whole
    /// `Send` view rather than its pointer field).
    ///
    /// # Safety
    /// The offset must stay inside the view's buffer.
    unsafe fn at(self, offset: isize) -> P {
        // SAFETY: the caller's contract.
        unsafe { self.ptr.plus(offset) }
    }
}

/// Whether a product may spread over the rayon pool or must stay on the calling thread (it is
/// one task of a parallel loop already).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Threads {
    Pool,
    Caller,
}

/// `dst = [dst +] scale · a · b` for `a` m × k, `b` k × n and `dst` m × n (`accumulate` keeps
/// dst's values; otherwise they are never read, so dst may be uninitialised-but-allocated).
///
/// # Safety
/// Every element each view's strides reach for these m, n, k must lie inside its buffer, and
/// nothing else may read or write `dst`'s elements during the call.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn product(
    m: usize,
    n: usize,
    k: usize,
    dst: ViewMut,
    accumulate: bool,
    a: View,
    b: View,
    scale: f32,
    threads: Threads,
) {
    if m == 0 || n == 0 {
        return;
    }
    if let Some(blas) = loaded() {
        // SAFETY: the caller's contract.
        if unsafe { blas.product(m, n, k, dst, accumulate, a, b, scale, threads) } {
            return;
        }
    }
    let parallelism = match threads {
        Threads::Pool if rayon::current_num_threads() > 1 => {
            gemm::Parallelism::Rayon(rayon::current_num_threads())
        }
        _ => gemm::Parallelism::None,
    };
    // SAFETY: the caller's contract. gemm's dst = alpha · dst + beta · a·b, dst read only when
    // `read_dst`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.ptr,
            dst.col_stride,
            dst.row_stride,
            accumulate,
            a.ptr,
            a.col_stride,
            a.row_stride,
            b.ptr,
            b.col_stride,
            b.row_stride,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The environment variable naming the BLAS library.
pub const BLAS_VARIABLE: &str = "GENOLENS_BLAS";

/// What `GENOLENS_BLAS` selected: `Ok(None)` for the built-in `gemm` crate.
static BACKEND: OnceLock<Result<Option<Blas>, String>> = OnceLock::new();

fn backend() -> &'static Result<Option<Blas>, String> {
    BACKEND.get_or_init(|| match std::env::var(BLAS_VARIABLE) {
        Ok(name) if !builtin(&name) => Blas::load(&name).map(Some),
        _ => Ok(None),
    })
}

/// Values of `GENOLENS_BLAS` that mean the built-in `gemm` crate.
fn builtin(name: &str) -> bool {
    matches!(name.trim(), "" | "gemm" | "builtin" | "rust")
}

fn loaded() -> Option<&'static Blas> {
    backend().as_ref().ok().and_then(Option::as_ref)
}

/// Loads the library `GENOLENS_BLAS` names (once) and says which backend runs the products:
/// the binaries call this at start-up so a bad name is an error before any work.
pub fn check_backend() -> Result<String, String> {
    match backend() {
        Ok(None) => Ok("gemm crate (built in)".to_string()),
        Ok(Some(blas)) => Ok(blas.description.clone()),
        Err(message) => Err(message.clone()),
    }
}

/// CBLAS's enums (the values every implementation shares).
const ROW_MAJOR: i32 = 101;
const NO_TRANS: i32 = 111;
const TRANS: i32 = 112;

type Sgemm = unsafe extern "C" fn(
    i32,
    i32,
    i32,
    i32,
    i32,
    i32,
    f32,
    *const f32,
    i32,
    *const f32,
    i32,
    f32,
    *mut f32,
    i32,
);

struct Blas {
    /// Kept open for the process's life: `sgemm` points into it.
    _library: libloading::Library,
    sgemm: Sgemm,
    description: String,
}

// SAFETY: the library handle and a function pointer are plain addresses; the BLAS is asked to
// run single-threaded, and CBLAS calls on disjoint outputs are safe from several threads.
unsafe impl Send for Blas {}
unsafe impl Sync for Blas {}

/// The products worth splitting over threads (multiply-adds).
const SPLIT_WORK: usize = 1 << 18;

impl Blas {
    fn load(name: &str) -> Result<Blas, String> {
        let name = name.trim();
        let hint = "set it to a shared library that exports cblas_sgemm (e.g. libopenblas.so.0 \
                    from Debian's libopenblas0-pthread, libblis.so.4, or libmkl_rt.so.3 from \
                    `pip install mkl`), or unset it for the built-in gemm crate";
        // SAFETY: loading runs the library's initialisers; these are BLAS libraries the user
        // named, whose initialisers only set up their own state.
        let library = unsafe { libloading::Library::new(name) }
            .map_err(|e| format!("{BLAS_VARIABLE}={name}: cannot load it ({e}); {hint}"))?;
        // SAFETY: symbols are looked up by their documented C names and signatures.
        unsafe {
            let sgemm = ["cblas_sgemm", "scipy_cblas_sgemm"]
                .iter()
                .find_map(|symbol| library.get::<Sgemm>(symbol.as_bytes()).ok().map(|f| *f))
                .ok_or_else(|| format!("{BLAS_VARIABLE}={name}: no cblas_sgemm in it; {hint}"))?;
            // One thread per call: MKL's sequential layer must be chosen before its first call.
            let mut single = "threads unchanged";
            if let Ok(layer) =
                library.get::<unsafe extern "C" fn(i32) -> i32>(b"MKL_Set_Threading_Layer")
            {
                layer(1); // MKL_THREADING_SEQUENTIAL
                single = "MKL sequential";
            }
            for symbol in [
                "openblas_set_num_threads",
                "scipy_openblas_set_num_threads",
                "bli_thread_set_num_threads",
                "MKL_Set_Num_Threads",
            ] {
                if let Ok(set) = library.get::<unsafe extern "C" fn(i32)>(symbol.as_bytes()) {
                    set(1);
                    if single == "threads unchanged" {
                        single = "one thread per call";
                    }
                }
            }
            Ok(Blas {
                description: format!("BLAS {name} ({single}, split over genolens's threads)"),
                sgemm,
                _library: library,
            })
        }
    }

    /// Runs the product through CBLAS and returns true, or returns false (doing nothing) when
    /// CBLAS cannot describe the operands.
    ///
    /// # Safety
    /// [`product`]'s contract.
    #[allow(clippy::too_many_arguments)]
    unsafe fn product(
        &self,
        m: usize,
        n: usize,
        k: usize,
        dst: ViewMut,
        accumulate: bool,
        a: View,
        b: View,
        scale: f32,
        threads: Threads,
    ) -> bool {
        // A column-major dst: compute dstᵀ = bᵀ · aᵀ instead.
        let (m, n, dst, a, b) = if dst.col_stride != 1 && n > 1 && dst.row_stride == 1 {
            (n, m, dst.transpose(), b.transpose(), a.transpose())
        } else {
            (m, n, dst, a, b)
        };
        let (Some(a_op), Some(b_op), Some(d_op)) =
            (operand(a, m, k), operand(b, k, n), operand(dst, m, n))
        else {
            return false;
        };
        if d_op.trans != NO_TRANS || [m, n, k].iter().any(|&d| d > i32::MAX as usize) {
            return false;
        }
        let call = |rows: std::ops::Range<usize>, cols: std::ops::Range<usize>| {
            // SAFETY: the block lies inside the caller's views; CBLAS reads a and b and writes
            // only this block of dst (the blocks of one product are disjoint).
            unsafe {
                (self.sgemm)(
                    ROW_MAJOR,
                    a_op.trans,
                    b_op.trans,
                    rows.len() as i32,
                    cols.len() as i32,
                    k as i32,
                    scale,
                    a.at(a_op.offset(rows.start, 0)),
                    a_op.leading as i32,
                    b.at(b_op.offset(0, cols.start)),
                    b_op.leading as i32,
                    if accumulate { 1.0 } else { 0.0 },
                    dst.at(d_op.offset(rows.start, cols.start)),
                    d_op.leading as i32,
                );
            }
        };
        let pool = rayon::current_num_threads();
        if threads == Threads::Caller || pool < 2 || m * n * k < SPLIT_WORK {
            // With k = 0 CBLAS scales dst by beta: zeros, or dst unchanged when accumulating.
            call(0..m, 0..n);
            return true;
        }
        // Split the longer side into one block per thread, in multiples of 16.
        let split_rows = m >= n;
        let extent = if split_rows { m } else { n };
        let block = extent.div_ceil(pool).div_ceil(16) * 16;
        rayon::scope(|scope| {
            for start in (0..extent).step_by(block) {
                let end = (start + block).min(extent);
                let call = &call;
                scope.spawn(move |_| {
                    if split_rows {
                        call(start..end, 0..n)
                    } else {
                        call(0..m, start..end)
                    }
                });
            }
        });
        true
    }
}

/// How CBLAS reads one operand (rows × cols): transposed or not, and its leading dimension.
#[derive(Clone, Copy)]
struct Operand {
    trans: i32,
    leading: isize,
}

impl Operand {
    /// The offset of element (row, col) in the operand's buffer.
    fn offset(self, row: usize, col: usize) -> isize {
        if self.trans == NO_TRANS {
            row as isize * self.leading + col as isize
        } else {
            col as isize * self.leading + row as isize
        }
    }
}

/// CBLAS's description of a rows × cols view, when it has one: row-major with unit column stride
/// (no transpose) or unit row stride (transpose), with a leading dimension CBLAS accepts. A
/// stride along a dimension of length 1 is never used, so it may be anything.
fn operand<P>(v: Matrix<P>, rows: usize, cols: usize) -> Option<Operand> {
    let valid = |leading: isize, width: usize| {
        leading >= width.max(1) as isize && leading <= i32::MAX as isize
    };
    let by_rows = if rows == 1 {
        cols.max(1) as isize
    } else {
        v.row_stride
    };
    if (cols == 1 || v.col_stride == 1) && valid(by_rows, cols) {
        return Some(Operand {
            trans: NO_TRANS,
            leading: by_rows,
        });
    }
    let by_cols = if cols == 1 {
        rows.max(1) as isize
    } else {
        v.col_stride
    };
    if (rows == 1 || v.row_stride == 1) && valid(by_cols, rows) {
        return Some(Operand {
            trans: TRANS,
            leading: by_cols,
        });
    }
    None
}

/// `a · b` for rank-2 tensors with no gradient of its own (for backward passes): CPU f32 through
/// [`product`], strided operands read in place; candle's matmul elsewhere.
pub(crate) fn matmul_no_grad(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    if crate::ops::kernels::fused(a) && crate::ops::kernels::fused(b) {
        a.apply_op2_no_bwd(b, &Product)
    } else {
        a.matmul(b)
    }
}

/// The op behind [`matmul_no_grad`].
struct Product;

impl CustomOp2 for Product {
    fn name(&self) -> &'static str {
        "genolens-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(a_data), CpuStorage::F32(b_data)) = (s1, s2) else {
            candle_core::bail!("{}: expected f32", self.name());
        };
        let ((m, k), (b_rows, n)) = (l1.shape().dims2()?, l2.shape().dims2()?);
        if k != b_rows {
            candle_core::bail!(
                "{}: cannot multiply {m} × {k} by {b_rows} × {n}",
                self.name()
            );
        }
        let view = |data: &[f32], layout: &Layout| View {
            // SAFETY: candle checked the layout against its buffer.
            ptr: unsafe { data.as_ptr().add(layout.start_offset()) },
            row_stride: layout.stride()[0] as isize,
            col_stride: layout.stride()[1] as isize,
        };
        let mut out = vec![0f32; m * n];
        // SAFETY: out is m × n (row stride n); each operand's layout, which candle checked
        // against its buffer, bounds every element its strides reach.
        unsafe {
            product(
                m,
                n,
                k,
                ViewMut::rows(out.as_mut_ptr(), n),
                false,
                view(a_data, l1),
                view(b_data, l2),
                1.0,
                Threads::Pool,
            );
        }
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A buffer of `len` seeded values in [−1, 1).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// One product's operands as laid out in memory, and the f64 reference of `dst`.
    struct Case {
        m: usize,
        n: usize,
        k: usize,
        a_t: bool,
        b_t: bool,
        dst_t: bool,
        accumulate: bool,
        scale: f32,
    }

    impl Case {
        /// Runs `run(dst, a, b)` on padded buffers (leading dimensions wider than the matrix,
        /// so a wrong stride reads the padding) and returns the largest error against f64.
        fn error(&self, run: impl Fn(ViewMut, View, View)) -> f64 {
            let (m, n, k) = (self.m, self.n, self.k);
            let pad = 3;
            // a is m × k: stored row-major (ld k + pad) or as its transpose (ld m + pad).
            let (a_ld, a_len) = if self.a_t {
                (m + pad, k * (m + pad))
            } else {
                (k + pad, m * (k + pad))
            };
            let (b_ld, b_len) = if self.b_t {
                (k + pad, n * (k + pad))
            } else {
                (n + pad, k * (n + pad))
            };
            let (d_ld, d_len) = if self.dst_t {
                (m + pad, n * (m + pad))
            } else {
                (n + pad, m * (n + pad))
            };
            let (a, b, mut dst) = (values(a_len, 1), values(b_len, 2), values(d_len, 3));
            let at = |v: &[f32], t: bool, ld: usize, i: usize, j: usize| {
                f64::from(if t { v[j * ld + i] } else { v[i * ld + j] })
            };
            let mut expected = vec![0f64; m * n];
            for i in 0..m {
                for j in 0..n {
                    let sum: f64 = (0..k)
                        .map(|l| at(&a, self.a_t, a_ld, i, l) * at(&b, self.b_t, b_ld, l, j))
                        .sum();
                    let before = if self.accumulate {
                        at(&dst, self.dst_t, d_ld, i, j)
                    } else {
                        0.0
                    };
                    expected[i * n + j] = before + f64::from(self.scale) * sum;
                }
            }
            let view = |ptr: *const f32, t: bool, ld: usize| {
                if t {
                    View::transposed(ptr, ld)
                } else {
                    View::rows(ptr, ld)
                }
            };
            let dst_view = if self.dst_t {
                ViewMut::transposed(dst.as_mut_ptr(), d_ld)
            } else {
                ViewMut::rows(dst.as_mut_ptr(), d_ld)
            };
            run(
                dst_view,
                view(a.as_ptr(), self.a_t, a_ld),
                view(b.as_ptr(), self.b_t, b_ld),
            );
            let untouched = values(d_len, 3);
            let mut worst = 0f64;
            for i in 0..m {
                for j in 0..n {
                    let got = at(&dst, self.dst_t, d_ld, i, j);
                    worst = worst.max((got - expected[i * n + j]).abs());
                }
            }
            // The padding of dst is never written.
            for (index, (&now, &before)) in dst.iter().zip(&untouched).enumerate() {
                let (outer, inner) = (index / d_ld, index % d_ld);
                let inside = if self.dst_t {
                    outer < n && inner < m
                } else {
                    outer < m && inner < n
                };
                if !inside {
                    assert_eq!(now, before, "padding element {index} was written");
                }
            }
            worst
        }
    }

    /// Every layout the fused ops pass, small and large enough to be split over threads.
    fn cases() -> Vec<Case> {
        let mut all = Vec::new();
        for (m, n, k) in [
            (7, 5, 3),
            (1, 9, 4),
            (9, 1, 4),
            (6, 6, 0),
            (200, 96, 40),
            (33, 300, 64),
        ] {
            for flags in 0..16u32 {
                all.push(Case {
                    m,
                    n,
                    k,
                    a_t: flags & 1 != 0,
                    b_t: flags & 2 != 0,
                    dst_t: flags & 4 != 0,
                    accumulate: flags & 8 != 0,
                    scale: if flags % 3 == 0 { 0.125 } else { 1.0 },
                });
            }
        }
        all
    }

    fn tolerance(case: &Case) -> f64 {
        1e-5 * (case.k.max(1) as f64)
    }

    #[test]
    fn the_built_in_product_matches_f64_on_every_layout() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for case in cases() {
            for threads in [Threads::Caller, Threads::Pool] {
                let error = pool.install(|| {
                    case.error(|dst, a, b| unsafe {
                        product(
                            case.m,
                            case.n,
                            case.k,
                            dst,
                            case.accumulate,
                            a,
                            b,
                            case.scale,
                            threads,
                        )
                    })
                });
                assert!(
                    error < tolerance(&case),
                    "{}×{}×{} {error}",
                    case.m,
                    case.n,
                    case.k
                );
            }
        }
    }

    /// The BLAS path on every layout, when a BLAS library is at hand: `GENOLENS_TEST_BLAS`
    /// names one (CI installs scipy-openblas32 from PyPI and sets it, so there this test always
    /// runs), else the usual Debian and MKL names are tried.
    #[test]
    fn a_loaded_blas_matches_f64_on_every_layout() {
        let named = std::env::var("GENOLENS_TEST_BLAS").ok();
        let candidates: Vec<String> = match &named {
            Some(name) => vec![name.clone()],
            None => [
                "libopenblas.so.0",
                "libblis.so.4",
                "libmkl_rt.so.3",
                "libmkl_rt.so.2",
            ]
            .map(String::from)
            .to_vec(),
        };
        let blas = match &named {
            Some(name) => Blas::load(name).unwrap_or_else(|message| panic!("{message}")),
            None => match candidates.iter().find_map(|name| Blas::load(name).ok()) {
                Some(blas) => blas,
                None => {
                    eprintln!("no BLAS library found: the BLAS path is not exercised here");
                    return;
                }
            },
        };
        eprintln!("testing {}", blas.description);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for case in cases() {
            for threads in [Threads::Caller, Threads::Pool] {
                let error = pool.install(|| {
                    case.error(|dst, a, b| unsafe {
                        assert!(blas.product(
                            case.m,
                            case.n,
                            case.k,
                            dst,
                            case.accumulate,
                            a,
                            b,
                            case.scale,
                            threads
                        ));
                    })
                });
                assert!(
                    error < tolerance(&case),
                    "{}×{}×{} {error}",
                    case.m,
                    case.n,
                    case.k
                );
            }
        }
        // Operands CBLAS cannot describe (no unit stride) are left to the gemm crate.
        let data = values(64, 4);
        let mut out = vec![0f32; 4];
        let strided = View {
            ptr: data.as_ptr(),
            row_stride: 8,
            col_stride: 2,
        };
        let taken = unsafe {
            blas.product(
                2,
                2,
                2,
                ViewMut::rows(out.as_mut_ptr(), 2),
                false,
                strided,
                strided,
                1.0,
                Threads::Caller,
            )
        };
        assert!(!taken);
    }

    #[test]
    fn a_name_that_does_not_load_is_a_clear_error() {
        let message = Blas::load("/no/such/libblas.so").err().unwrap();
        assert!(
            message.contains("GENOLENS_BLAS=/no/such/libblas.so"),
            "{message}"
        );
        assert!(message.contains("cblas_sgemm"), "{message}");
        // A library without cblas_sgemm (libm is always at hand).
        let message = Blas::load("libm.so.6").err().unwrap();
        assert!(message.contains("no cblas_sgemm"), "{message}");
    }

    #[test]
    fn matmul_no_grad_equals_candles_matmul_on_transposed_views() {
        use crate::ops::kernels::test_support::{max_difference, normal};
        let a = normal(&[40, 24], 1, 1.0);
        let b = normal(&[24, 31], 2, 1.0);
        let theirs = a.matmul(&b).unwrap();
        assert!(max_difference(&matmul_no_grad(&a, &b).unwrap(), &theirs) < 1e-5);
        let (a_t, b_t) = (
            a.t().unwrap().contiguous().unwrap(),
            b.t().unwrap().contiguous().unwrap(),
        );
        let ours = matmul_no_grad(&a_t.t().unwrap(), &b_t.t().unwrap()).unwrap();
        assert!(max_difference(&ours, &theirs) < 1e-5);
        assert!(matmul_no_grad(&a, &a).is_err());
    }
}
