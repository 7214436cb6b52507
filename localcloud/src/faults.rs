//! Deterministic fault injection: throttling with `Retry-After`, 5xx, added latency and dropped
//! connections, decided per request by a seeded generator so a test run is reproducible.
//! Switchable at run time through the admin API; admin and Entra requests are never faulted.

use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::Duration;

/// What to inject, as percentages of eligible requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    pub seed: u64,
    /// 429 with `Retry-After: retry_after_s`.
    pub throttle_percent: u32,
    pub retry_after_s: u32,
    /// 500/503 answers.
    pub error_percent: u32,
    /// The response headers are sent, then the connection breaks mid-body.
    pub drop_percent: u32,
    /// Added to every eligible request.
    pub latency_ms: u64,
}

/// The fault chosen for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    Throttle(u32),
    ServerError(u16),
    Drop,
}

impl Fault {
    pub fn label(self) -> &'static str {
        match self {
            Fault::None => "",
            Fault::Throttle(_) => "throttle",
            Fault::ServerError(_) => "5xx",
            Fault::Drop => "drop",
        }
    }
}

#[derive(Default)]
pub struct Faults {
    inner: Mutex<(FaultConfig, u64)>,
}

/// splitmix64: tiny, well-distributed, and reproducible from a seed.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Faults {
    pub fn set(&self, config: FaultConfig) {
        if let Ok(mut g) = self.inner.lock() {
            let seed = config.seed;
            *g = (config, seed);
        }
    }

    pub fn get(&self) -> FaultConfig {
        self.inner.lock().map(|g| g.0.clone()).unwrap_or_default()
    }

    /// Decides the fault for the next eligible request, and the latency to add.
    pub fn decide(&self) -> (Fault, Duration) {
        let Ok(mut g) = self.inner.lock() else {
            return (Fault::None, Duration::ZERO);
        };
        let (config, state) = &mut *g;
        let latency = Duration::from_millis(config.latency_ms);
        if config.throttle_percent + config.error_percent + config.drop_percent == 0 {
            return (Fault::None, latency);
        }
        let roll = (next(state) % 100) as u32;
        let fault = if roll < config.throttle_percent {
            Fault::Throttle(config.retry_after_s)
        } else if roll < config.throttle_percent + config.error_percent {
            if next(state).is_multiple_of(2) {
                Fault::ServerError(500)
            } else {
                Fault::ServerError(503)
            }
        } else if roll < config.throttle_percent + config.error_percent + config.drop_percent {
            Fault::Drop
        } else {
            Fault::None
        };
        (fault, latency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_faults() {
        let run = || {
            let f = Faults::default();
            f.set(FaultConfig {
                seed: 7,
                throttle_percent: 20,
                error_percent: 5,
                drop_percent: 5,
                ..Default::default()
            });
            (0..200).map(|_| f.decide().0).collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        let throttled = a.iter().filter(|f| matches!(f, Fault::Throttle(_))).count();
        assert!((20..=60).contains(&throttled), "{throttled} of 200 throttled at 20 %");
    }
}
