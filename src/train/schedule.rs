//! Learning-rate schedule: linear warm-up, then linear decay to zero (HF's
//! `get_linear_schedule_with_warmup`, which DNABERT's scripts use).

/// Learning rate at `step` (0-based) of `total` steps, warming up over `warmup` steps to `peak`.
pub fn linear_warmup_decay(step: usize, total: usize, warmup: usize, peak: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let remaining = total.saturating_sub(step) as f64;
    let decay_steps = total.saturating_sub(warmup).max(1) as f64;
    peak * (remaining / decay_steps).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays_to_zero() {
        assert_eq!(linear_warmup_decay(0, 100, 10, 1.0), 0.1);
        assert_eq!(linear_warmup_decay(9, 100, 10, 1.0), 1.0);
        assert_eq!(linear_warmup_decay(10, 100, 10, 1.0), 1.0);
        assert!((linear_warmup_decay(55, 100, 10, 1.0) - 0.5).abs() < 1e-12);
        assert_eq!(linear_warmup_decay(100, 100, 10, 1.0), 0.0);
    }
}
