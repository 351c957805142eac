//! Where a training step's time goes: preparing the batch on the host, the forward pass, the
//! backward pass and the optimiser update. A GPU runs kernels asynchronously, so a phase's time is
//! only true if the device is synchronised at its end; `GENOLENS_PROFILE=1` does that (costing a
//! little speed). Without it the phases after batch preparation are reported together, and the
//! step total is still exact because every step reads its loss back.

use std::time::Instant;

use candle_core::Device;

use crate::error::Result;

/// The phases of a step, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Sampling, tokenising and masking on the host.
    Batch,
    /// Forward pass and loss.
    Forward,
    /// `loss.backward()`.
    Backward,
    /// Optimiser update and reading the loss back.
    Update,
}

const NAMES: [&str; 4] = ["batch", "forward", "backward", "update"];

/// Accumulates phase times over steps until [`StepTimer::summary`] is taken.
pub struct StepTimer {
    synchronise: bool,
    seconds: [f64; 4],
    steps: usize,
    last: Instant,
}

impl Default for StepTimer {
    fn default() -> Self {
        Self::new(std::env::var("GENOLENS_PROFILE").is_ok_and(|v| v == "1"))
    }
}

impl StepTimer {
    /// A timer; `synchronise` waits for the device at the end of every phase.
    pub fn new(synchronise: bool) -> Self {
        StepTimer {
            synchronise,
            seconds: [0.0; 4],
            steps: 0,
            last: Instant::now(),
        }
    }

    /// Marks the start of a step.
    pub fn start_step(&mut self) {
        self.last = Instant::now();
    }

    /// Ends `phase` (the Update phase also ends the step).
    pub fn end(&mut self, phase: Phase, device: &Device) -> Result<()> {
        if self.synchronise && phase != Phase::Batch {
            device.synchronize()?;
        }
        let now = Instant::now();
        self.seconds[phase as usize] += (now - self.last).as_secs_f64();
        self.last = now;
        if phase == Phase::Update {
            self.steps += 1;
        }
        Ok(())
    }

    /// Mean milliseconds a step, by phase, since the last summary; then starts over.
    pub fn summary(&mut self) -> String {
        let steps = self.steps.max(1) as f64;
        let ms = |seconds: f64| 1e3 * seconds / steps;
        let total: f64 = self.seconds.iter().sum();
        let text = if self.synchronise {
            let phases: Vec<String> = NAMES
                .iter()
                .zip(self.seconds)
                .map(|(name, seconds)| format!("{name} {:.1}", ms(seconds)))
                .collect();
            format!("{:.1} ms a step: {}", ms(total), phases.join(", "))
        } else {
            format!(
                "{:.1} ms a step, {:.1} of them preparing the batch (GENOLENS_PROFILE=1 splits the rest)",
                ms(total),
                ms(self.seconds[Phase::Batch as usize])
            )
        };
        *self = StepTimer::new(self.synchronise);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_add_up_to_the_step_and_reset() {
        let mut timer = StepTimer::new(true);
        for _ in 0..2 {
            timer.start_step();
            for phase in [Phase::Batch, Phase::Forward, Phase::Backward, Phase::Update] {
                std::thread::sleep(std::time::Duration::from_millis(2));
                timer.end(phase, &Device::Cpu).unwrap();
            }
        }
        let summary = timer.summary();
        assert!(
            summary.contains("batch") && summary.contains("update"),
            "{summary}"
        );
        let total: f64 = summary.split(" ms").next().unwrap().parse().unwrap();
        assert!(total >= 8.0, "{summary}");
        assert_eq!(timer.steps, 0);
        assert!(StepTimer::new(false).summary().contains("GENOLENS_PROFILE"));
    }
}
