//! Exponential backoff with full jitter (a delay drawn uniformly from zero to the current
//! ceiling, which doubles per failure up to a cap): retries of many devices spread out instead of
//! hitting a recovering service together.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap, failures: 0 }
    }

    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// The ceiling for the current failure count.
    pub fn ceiling(&self) -> Duration {
        self.base.saturating_mul(1u32 << self.failures.min(20)).min(self.cap)
    }

    /// The next delay; each call counts one more failure. Never below a tenth of `base`, so a
    /// dead link is not hammered.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let floor = self.base / 10;
        let drawn = Duration::from_secs_f64(ceiling.as_secs_f64() * rand::random::<f64>());
        drawn.max(floor)
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_with_jitter_and_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut ceilings = Vec::new();
        let mut delays = Vec::new();
        for _ in 0..8 {
            ceilings.push(backoff.ceiling());
            delays.push(backoff.next_delay());
        }
        assert_eq!(ceilings[0], Duration::from_millis(100));
        assert_eq!(ceilings[3], Duration::from_millis(800));
        assert_eq!(ceilings[7], Duration::from_secs(2));
        for (delay, ceiling) in delays.iter().zip(&ceilings) {
            assert!(
                *delay >= Duration::from_millis(10) && delay <= ceiling,
                "{delay:?} > {ceiling:?}"
            );
        }
        // Jitter: many draws at the cap are not all equal.
        let draws: std::collections::HashSet<_> = (0..20).map(|_| backoff.next_delay()).collect();
        assert!(draws.len() > 10);
        backoff.reset();
        assert_eq!(backoff.ceiling(), Duration::from_millis(100));
    }
}
