//! Where a run's capability calls go.
//!
//! A target pairs a name with a [`CloudBackend`]. The built-in targets (`local`, Azure clouds)
//! arrive with issues 3 and 5; until then [`Target::offline`] answers every cloud call with
//! `unavailable`, and an embedding program may bring its own backend.

use crate::backend::{CloudBackend, Unavailable};
use std::sync::Arc;

/// A named destination for capability calls.
#[derive(Clone)]
pub struct Target {
    name: String,
    backend: Arc<dyn CloudBackend>,
}

impl Target {
    /// A target with no cloud: plugins that only compute (or only log) run; cloud calls fail
    /// with `unavailable`.
    pub fn offline() -> Self {
        Target::new("offline", Arc::new(Unavailable))
    }

    /// A target served by `backend`.
    pub fn new(name: impl Into<String>, backend: Arc<dyn CloudBackend>) -> Self {
        Target {
            name: name.into(),
            backend,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn backend(&self) -> Arc<dyn CloudBackend> {
        Arc::clone(&self.backend)
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
