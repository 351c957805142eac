//! Branch-free `exp` and `erf` for f32 slices, written so the compiler vectorises them, and compiled
//! for AVX-512 and AVX2+FMA with run-time selection (libm's scalar erff/expf dominated the
//! element-wise time). Accuracy: exp within ~2 ulp; erf within 6e-7 absolute in f32 (Abramowitz &
//! Stegun 7.1.26, as PyTorch's vectorised CPU erf, with a Maclaurin series below |x| = 0.5).

const LOG2_E: f32 = std::f32::consts::LOG2_E;
const LN2_HIGH: f32 = 0.693_359_4;
const LN2_LOW: f32 = -2.121_944_4e-4;
/// Below this exp(x) underflows to 0 in f32 (the masked attention scores go far below).
const EXP_MIN_INPUT: f32 = -87.336_55;
const EXP_MAX_INPUT: f32 = 88.376_26;

/// exp(x) without branches: x = n·ln2 + r, exp(r) by a degree-6 polynomial, 2^n by exponent bits.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let clamped = x.clamp(EXP_MIN_INPUT, EXP_MAX_INPUT);
    // Round to nearest by adding and removing 1.5·2^23 (no libm call, vectorises everywhere).
    const ROUNDER: f32 = 12_582_912.0;
    let shifted = clamped * LOG2_E + ROUNDER;
    let n = shifted - ROUNDER;
    let r = clamped - n * LN2_HIGH - n * LN2_LOW;
    let polynomial = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // n, an integer in [-126, 128], sits in the low mantissa bits of `shifted`: integer
    // arithmetic on the bits (which vectorises) rather than a saturating `n as i32` (which LLVM
    // turned into one scalar conversion per element, half of the softmax's time).
    let n_bits = shifted.to_bits().wrapping_sub(ROUNDER.to_bits()) as i32;
    let scale = f32::from_bits(((n_bits + 127) as u32) << 23);
    let value = polynomial * scale;
    if x < EXP_MIN_INPUT {
        0.0
    } else {
        value
    }
}

/// erf(x) = sign(x)·(1 − t·P(t)·exp(−x²)), t = 1/(1 + p|x|) (A&S 7.1.26); series near 0.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_7;
    const A4: f32 = -1.453_152_1;
    const A5: f32 = 1.061_405_4;
    const TWO_OVER_SQRT_PI: f32 = std::f32::consts::FRAC_2_SQRT_PI;
    let magnitude = x.abs();
    let t = 1.0 / (1.0 + P * magnitude);
    let polynomial = t * (A1 + t * (A2 + t * (A3 + t * (A4 + t * A5))));
    let tail = (1.0 - polynomial * exp(-magnitude * magnitude)).copysign(x);
    // Near 0, 1 − P·exp cancels; the Maclaurin series is exact to f32 there (next term < 3e-8).
    let x2 = x * x;
    let series = TWO_OVER_SQRT_PI
        * x
        * (1.0
            + x2 * (-1.0 / 3.0
                + x2 * (1.0 / 10.0 + x2 * (-1.0 / 42.0 + x2 * (1.0 / 216.0 - x2 / 1320.0)))));
    if magnitude < 0.5 {
        series
    } else {
        tail
    }
}

/// Defines a function whose body is compiled three times (AVX-512F, AVX2+FMA, baseline) and
/// picked at run time, so the loops in it vectorise for the widest unit the CPU has. The body is
/// an `#[inline(always)]` function, which guarantees it is inlined into each target copy; so must
/// be every helper it calls in a hot loop. Rust never contracts `a * b + c` into an FMA on its
/// own, so each copy computes the same bits. A return type is optional.
#[macro_export]
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $type:ty),* $(,)?) $body:block) => {
        $crate::simd_dispatch! { $(#[$meta])* $vis fn $name($($arg: $type),*) -> () $body }
    };
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $type:ty),* $(,)?) -> $ret:ty $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $type),*) -> $ret {
            #[inline(always)]
            fn body($($arg: $type),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $type),*) -> $ret {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $type),*) -> $ret {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports AVX-512F (checked at run time just above).
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports AVX2 and FMA (checked at run time just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

/// Applies `function` element-wise (vectorises inside a [`simd_dispatch!`] body).
#[inline(always)]
pub fn map_into(output: &mut [f32], input: &[f32], function: impl Fn(f32) -> f32) {
    for (o, &x) in output.iter_mut().zip(input) {
        *o = function(x);
    }
}

const LANES: usize = 16;

/// Sum with 16 independent accumulators (vectorisable, unlike a sequential float fold).
#[inline(always)]
pub fn sum(values: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    lanes.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// Replaces each value by exp(value − shift) and returns their sum, summed exactly as [`sum`]
/// would sum the new values (one pass instead of two; same bits).
#[inline(always)]
pub fn exp_in_place_and_sum(values: &mut [f32], shift: f32) -> f32 {
    let mut lanes = [0f32; LANES];
    let mut chunks = values.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk.iter_mut()) {
            *v = exp(*v - shift);
            *lane += *v;
        }
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        // The tail through one full vector (a 200-token row leaves 8: element by element they
        // had cost as much as half the row's vectors); same function, so the same bits.
        let mut padded = [0f32; LANES];
        padded[..rest.len()].copy_from_slice(rest);
        for v in padded.iter_mut() {
            *v = exp(*v - shift);
        }
        rest.copy_from_slice(&padded[..rest.len()]);
    }
    lanes.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// Dot product with 16 independent accumulators (the summation order depends only on the length).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let rest: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for ((lane, &x), &y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += x * y;
        }
    }
    lanes.iter().sum::<f32>() + rest
}

/// Maximum with 16 independent accumulators.
#[inline(always)]
pub fn max(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(v);
        }
    }
    lanes
        .iter()
        .chain(rest)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_to_a_few_ulp() {
        let mut worst = 0f32;
        for i in -8700..=8800 {
            let x = i as f32 * 0.01;
            let relative = ((exp(x) - x.exp()) / x.exp()).abs();
            worst = worst.max(relative);
        }
        assert!(worst < 5e-7, "relative error {worst}");
        assert_eq!(exp(f32::MIN), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn erf_is_within_6e_7_of_libm() {
        let mut worst = 0f64;
        for i in -6000..=6000 {
            let x = i as f32 * 0.001;
            worst = worst.max((erf(x) as f64 - libm::erf(x as f64)).abs());
        }
        assert!(worst < 6e-7, "absolute error {worst}");
        assert_eq!(erf(0.0), 0.0);
        assert_eq!(erf(10.0), 1.0);
    }

    #[test]
    fn lane_reductions_match_sequential_ones() {
        let values: Vec<f32> = (0..1003).map(|i| ((i * 37) % 101) as f32 - 50.0).collect();
        assert_eq!(max(&values), 50.0);
        assert!((sum(&values) - values.iter().sum::<f32>()).abs() < 1e-3);
        assert_eq!(max(&[f32::MIN, -3.0]), -3.0);
    }

    #[test]
    fn dispatch_gives_the_same_values_as_the_scalar_function() {
        let input: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.013).collect();
        let mut output = vec![0f32; input.len()];
        crate::simd_dispatch! {
            fn erf_slice(output: &mut [f32], input: &[f32]) {
                map_into(output, input, erf)
            }
        }
        erf_slice(&mut output, &input);
        for (o, &x) in output.iter().zip(&input) {
            assert!((o - erf(x)).abs() <= 1e-7);
        }
    }
}
