//! Deterministic fault injection, decided per request by a seeded generator so a test run is
//! reproducible, and scoped by service. Switchable at run time through the admin API; admin
//! requests are never faulted.
//!
//! Kinds (issue 12, "faults of every kind that matters"):
//! - **before the handler** — 429 with `Retry-After` (azure-reference.md §5, throttling), 500/503,
//!   a dropped connection, or a **hung** connection (no answer for [`FaultConfig::hang_ms`], then
//!   dropped): the request has no effect;
//! - **after the handler** — the handler runs and its effect is committed (a key version
//!   created, a PUT applied), then the answer is lost (connection dropped) or replaced by a
//!   500/503: the case a non-idempotent retry duplicates.
//!
//! Services ([`Service`]): Entra's token endpoint, ARM, Graph, the Key Vault data plane, each
//! cluster's API server, and the clusters' own KMS calls to Key Vault (decided in
//! `k8s::kms`, where a fault fails the API server's encrypt/decrypt as a KMS plugin failure
//! would). Each service draws from its own stream of the seed, so traffic on one service never
//! shifts the faults another one sees.

use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::Duration;

/// A service faults can be scoped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// `POST /{tenant}/oauth2/v2.0/token`.
    Entra,
    /// `/subscriptions/...`.
    Arm,
    /// `GET /v1.0/me`.
    Graph,
    /// `{vault}.vault.localhost`.
    Keyvault,
    /// Each cluster's API server, `/k8s/{cluster id}/...`.
    Apiserver,
    /// The clusters' KMS calls to Key Vault (encrypt/decrypt of data keys), in process.
    Kms,
}

impl Service {
    /// Every service, in a fixed order (the order of their seed streams).
    pub const ALL: [Service; 6] = [
        Service::Entra,
        Service::Arm,
        Service::Graph,
        Service::Keyvault,
        Service::Apiserver,
        Service::Kms,
    ];

    /// The services faulted when [`FaultConfig::services`] is empty: what the local cloud
    /// faulted before services could be chosen (everything a client calls over HTTP except
    /// Entra).
    pub const DEFAULT: [Service; 4] = [Service::Arm, Service::Graph, Service::Keyvault, Service::Apiserver];

    fn index(self) -> usize {
        Service::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }

    /// The name used in the admin API and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Service::Entra => "entra",
            Service::Arm => "arm",
            Service::Graph => "graph",
            Service::Keyvault => "keyvault",
            Service::Apiserver => "apiserver",
            Service::Kms => "kms",
        }
    }
}

/// How long a hung connection is held when [`FaultConfig::hang_ms`] is not given: longer than
/// most clients' per-attempt timeout, short enough that a forgotten fault ends.
pub const DEFAULT_HANG_MS: u64 = 30_000;

/// What to inject, as percentages of eligible requests. The percentages of one request's
/// possible faults add up to at most 100 (the admin API refuses more).
///
/// Invariant kept from the first version of this type: a config with only `seed`,
/// `throttle_percent`, `retry_after_s`, `error_percent`, `drop_percent` and `latency_ms` faults
/// exactly what it did before (ARM, Graph, Key Vault and the API servers; never Entra).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    pub seed: u64,
    /// Before the handler: 429 with `Retry-After: retry_after_s`.
    pub throttle_percent: u32,
    pub retry_after_s: u32,
    /// Before the handler: 500/503 answers.
    pub error_percent: u32,
    /// Before the handler: the response headers are sent, then the connection breaks mid-body.
    pub drop_percent: u32,
    /// Added to every eligible request (not to KMS calls, which are in process).
    pub latency_ms: u64,
    /// Before the handler: no answer for `hang_ms`, then the connection is dropped. Nothing
    /// else waits meanwhile (the hold is an async sleep of that one request).
    pub hang_percent: u32,
    /// How long a hung connection is held (default [`DEFAULT_HANG_MS`]).
    pub hang_ms: u64,
    /// After the handler: its effect is committed, then the connection is dropped mid-body.
    pub lost_response_percent: u32,
    /// After the handler: its effect is committed, then a 500/503 replaces its answer.
    pub error_after_percent: u32,
    /// Where faults apply; empty means [`Service::DEFAULT`].
    pub services: Vec<Service>,
    /// Cluster ids (any case) the `apiserver` and `kms` faults are limited to; empty means every
    /// cluster.
    pub clusters: Vec<String>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            seed: 0,
            throttle_percent: 0,
            retry_after_s: 0,
            error_percent: 0,
            drop_percent: 0,
            latency_ms: 0,
            hang_percent: 0,
            hang_ms: DEFAULT_HANG_MS,
            lost_response_percent: 0,
            error_after_percent: 0,
            services: Vec::new(),
            clusters: Vec::new(),
        }
    }
}

/// Why a [`FaultConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidFaults {
    #[error("the fault percentages add up to {0}, more than 100")]
    OverHundred(u32),
}

impl FaultConfig {
    /// Checks what serde cannot: the percentages of one request's faults add up to at most 100.
    pub fn validate(&self) -> Result<(), InvalidFaults> {
        let total = self.total_percent();
        if total > 100 {
            return Err(InvalidFaults::OverHundred(total));
        }
        Ok(())
    }

    fn total_percent(&self) -> u32 {
        [
            self.throttle_percent,
            self.error_percent,
            self.drop_percent,
            self.hang_percent,
            self.error_after_percent,
            self.lost_response_percent,
        ]
        .iter()
        .fold(0u32, |a, b| a.saturating_add(*b))
    }

    fn covers(&self, service: Service, cluster: Option<&str>) -> bool {
        let listed = if self.services.is_empty() {
            Service::DEFAULT.contains(&service)
        } else {
            self.services.contains(&service)
        };
        let cluster_ok = match (service, cluster) {
            (Service::Apiserver | Service::Kms, Some(c)) if !self.clusters.is_empty() => {
                self.clusters.iter().any(|want| want.eq_ignore_ascii_case(c))
            }
            _ => true,
        };
        listed && cluster_ok
    }
}

/// The fault chosen for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Before the handler: 429 with this `Retry-After`.
    Throttle(u32),
    /// Before the handler: this 5xx status.
    ServerError(u16),
    /// Before the handler: the connection breaks.
    Drop,
    /// Before the handler: no answer for this long, then the connection breaks.
    Hang(Duration),
    /// After the handler: its effect stays, this 5xx status replaces its answer.
    ServerErrorAfter(u16),
    /// After the handler: its effect stays, the connection breaks.
    DropAfter,
}

impl Fault {
    /// The request log's `fault` column for this fault.
    pub fn label(self) -> &'static str {
        match self {
            Fault::None => "",
            Fault::Throttle(_) => "throttle",
            Fault::ServerError(_) => "5xx",
            Fault::Drop => "drop",
            Fault::Hang(_) => "hang",
            Fault::ServerErrorAfter(_) => "5xx-after",
            Fault::DropAfter => "drop-after",
        }
    }

    /// The label of this fault on a cluster's KMS call (`kms-5xx`, …), logged on the API
    /// server request that made the call.
    pub fn kms_label(self) -> &'static str {
        match self {
            Fault::None => "",
            Fault::Throttle(_) => "kms-throttle",
            Fault::ServerError(_) | Fault::ServerErrorAfter(_) => "kms-5xx",
            Fault::Drop | Fault::DropAfter => "kms-drop",
            Fault::Hang(_) => "kms-hang",
        }
    }
}

/// The run-time fault switch: a config and one generator state per service.
#[derive(Default)]
pub struct Faults {
    inner: Mutex<(FaultConfig, [u64; Service::ALL.len()])>,
}

/// splitmix64: tiny, well-distributed, and reproducible from a seed.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The starting state of each service's stream: derived from the seed, distinct per service.
fn streams(seed: u64) -> [u64; Service::ALL.len()] {
    let mut out = [0u64; Service::ALL.len()];
    for (i, s) in out.iter_mut().enumerate() {
        let mut mix = seed ^ (i as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
        *s = next(&mut mix);
    }
    out
}

impl Faults {
    /// Replaces the config and restarts every service's stream from its seed.
    pub fn set(&self, config: FaultConfig) {
        if let Ok(mut g) = self.inner.lock() {
            let seed = config.seed;
            *g = (config, streams(seed));
        }
    }

    pub fn get(&self) -> FaultConfig {
        self.inner.lock().map(|g| g.0.clone()).unwrap_or_default()
    }

    /// Decides the fault for the next request to `service` (of `cluster`, for the API servers and
    /// KMS), and the latency to add. A request outside the configured scope gets no fault, no
    /// latency, and leaves every stream untouched.
    pub fn decide(&self, service: Service, cluster: Option<&str>) -> (Fault, Duration) {
        let Ok(mut g) = self.inner.lock() else {
            return (Fault::None, Duration::ZERO);
        };
        let (config, states) = &mut *g;
        if !config.covers(service, cluster) {
            return (Fault::None, Duration::ZERO);
        }
        let latency = Duration::from_millis(config.latency_ms);
        if config.total_percent() == 0 {
            return (Fault::None, latency);
        }
        let state = &mut states[service.index()];
        let roll = (next(state) % 100) as u32;
        let five_xx = |state: &mut u64| if next(state).is_multiple_of(2) { 500 } else { 503 };
        let mut bound = 0;
        let mut hit = |percent: u32| {
            bound += percent;
            roll < bound
        };
        let fault = if hit(config.throttle_percent) {
            Fault::Throttle(config.retry_after_s)
        } else if hit(config.error_percent) {
            Fault::ServerError(five_xx(state))
        } else if hit(config.drop_percent) {
            Fault::Drop
        } else if hit(config.hang_percent) {
            Fault::Hang(Duration::from_millis(config.hang_ms))
        } else if hit(config.error_after_percent) {
            Fault::ServerErrorAfter(five_xx(state))
        } else if hit(config.lost_response_percent) {
            Fault::DropAfter
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
            (0..200).map(|_| f.decide(Service::Arm, None).0).collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        let throttled = a.iter().filter(|f| matches!(f, Fault::Throttle(_))).count();
        assert!((20..=60).contains(&throttled), "{throttled} of 200 throttled at 20 %");
    }

    #[test]
    fn scope_and_streams_are_per_service() {
        let f = Faults::default();
        f.set(FaultConfig {
            seed: 3,
            error_percent: 50,
            services: vec![Service::Keyvault, Service::Apiserver],
            clusters: vec!["/subscriptions/S/resourceGroups/rg/providers/x/managedClusters/a".into()],
            ..Default::default()
        });
        assert_eq!(f.decide(Service::Arm, None).0, Fault::None);
        assert_eq!(f.decide(Service::Entra, None).0, Fault::None);
        let other = "/subscriptions/s/resourcegroups/rg/providers/x/managedclusters/b";
        assert!((0..50).all(|_| f.decide(Service::Apiserver, Some(other)).0 == Fault::None));
        let kv_alone: Vec<_> = (0..50).map(|_| f.decide(Service::Keyvault, None).0).collect();
        f.set(f.get());
        let mut kv_mixed = Vec::new();
        for _ in 0..50 {
            let _ = f.decide(Service::Apiserver, Some(&other.replace("/b", "/a")));
            kv_mixed.push(f.decide(Service::Keyvault, None).0);
        }
        assert_eq!(kv_alone, kv_mixed, "API server traffic shifted Key Vault's faults");
        assert!(kv_alone.iter().any(|x| *x != Fault::None));
    }

    #[test]
    fn old_configs_keep_their_meaning() {
        let config: FaultConfig = serde_json::from_str(r#"{"seed":1,"error_percent":100}"#).unwrap_or_default();
        assert!(config.covers(Service::Arm, None) && config.covers(Service::Apiserver, Some("x")));
        assert!(!config.covers(Service::Entra, None) && !config.covers(Service::Kms, Some("x")));
        assert_eq!(config.hang_ms, DEFAULT_HANG_MS);
        let over = FaultConfig {
            throttle_percent: 60,
            lost_response_percent: 50,
            ..Default::default()
        };
        assert_eq!(over.validate(), Err(InvalidFaults::OverHundred(110)));
    }
}
