//! Per-step resource limits. Each is configurable per pipeline step; the defaults fit every
//! built-in plugin with a wide margin and stop a runaway one quickly.

use std::time::Duration;

/// The limits one step runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepLimits {
    /// Wall-clock bound on the whole step, including time spent inside host calls.
    pub timeout: Duration,
    /// Cap on each linear memory of the plugin, in bytes.
    pub memory_bytes: usize,
    /// Cap on instances (a component counts each core instance inside it).
    pub instances: usize,
    /// Cap on tables.
    pub tables: usize,
    /// Cap on the elements of any one table.
    pub table_elements: usize,
}

impl StepLimits {
    /// Default wall-clock timeout: long enough for a KMS update's long-running operation.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60 * 60);
    /// Default memory cap (built-in plugins use under 2 MiB).
    pub const DEFAULT_MEMORY: usize = 256 << 20;
}

impl Default for StepLimits {
    fn default() -> Self {
        StepLimits {
            timeout: Self::DEFAULT_TIMEOUT,
            memory_bytes: Self::DEFAULT_MEMORY,
            instances: 64,
            tables: 64,
            table_elements: 100_000,
        }
    }
}
