//! The host side of every WIT interface, one module each, and the single policy point that every
//! capability call passes through before any I/O.
//!
//! A capability function does three things: [`StepContext::authorize`] (grant check, hooks,
//! tracing, and an [`Authorized`] token), the backend call with that token, and
//! [`StepContext::finish`] (outcome to hooks and events). Nothing else may reach a backend,
//! because nothing else can mint the token.

mod aks;
mod arm;
mod checkpoint;
mod identity;
mod keyvault;
mod kubernetes;
mod log;
mod types;

use crate::backend::{Authorized, CloudBackend};
use crate::events::{Event, EventSink};
use crate::grants::{Action, Grants, ResourcePath};
use crate::wit::types::{Error as WitError, ErrorKind};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A failed capability call: either an error the guest sees as a WIT `error` value, or a host
/// fault that traps the instance (a host bug must never look like an ordinary "not found").
#[derive(Debug)]
pub enum CapabilityError {
    Guest(WitError),
    Trap(wasmtime::Error),
}

impl CapabilityError {
    /// A guest-visible error.
    pub fn guest(kind: ErrorKind, code: &str, message: impl Into<String>) -> Self {
        CapabilityError::Guest(WitError {
            kind,
            code: code.to_string(),
            message: message.into(),
        })
    }

    /// A host fault; the step fails with a trap.
    pub fn trap(error: impl Into<wasmtime::Error>) -> Self {
        CapabilityError::Trap(error.into())
    }

    fn summary(&self) -> String {
        match self {
            CapabilityError::Guest(e) => format!("{} {} {}", e.kind, e.code, e.message),
            CapabilityError::Trap(e) => format!("host fault: {e}"),
        }
    }
}

impl From<WitError> for CapabilityError {
    fn from(e: WitError) -> Self {
        CapabilityError::Guest(e)
    }
}

impl fmt::Display for CapabilityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

/// Describes one capability call for the policy point.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// Stable name, `interface.function` as in the WIT (`keyvault.get-vault`).
    pub name: &'static str,
    /// The action the call needs; `None` for calls that need no grant (`log`, `checkpoint`, `whoami`).
    pub action: Option<Action>,
    /// The ARM resource the call touches.
    pub resource: Option<&'a str>,
}

/// Extra policy and observation at the policy point, with defaulted methods: the place where
/// journaling (issue 6) and a platform team's own rules plug in.
pub trait CallHooks: Send + Sync {
    /// Runs after the grant check allowed `call`, before any I/O. An `Err` denies it.
    fn before(&self, step: &str, call: &Call<'_>) -> Result<(), WitError> {
        let _ = (step, call);
        Ok(())
    }

    /// Runs when an allowed call finished.
    fn after(&self, step: &str, call: &Call<'_>, ok: bool, duration: Duration) {
        let _ = (step, call, ok, duration);
    }
}

/// Hooks that do nothing.
#[derive(Debug, Default)]
pub struct NoHooks;

impl CallHooks for NoHooks {}

/// Largest checkpoint key and value a plugin may store.
const CHECKPOINT_KEY_MAX: usize = 256;
const CHECKPOINT_VALUE_MAX: usize = 64 * 1024;

/// Everything one step's capabilities can reach: its grants, the backend, the hooks, its event
/// sink and its checkpoint map. Nothing of other steps.
pub struct StepContext {
    pub(crate) run_id: String,
    pub(crate) step: String,
    pub(crate) grants: Grants,
    pub(crate) backend: Arc<dyn CloudBackend>,
    pub(crate) hooks: Arc<dyn CallHooks>,
    pub(crate) events: EventSink,
    pub(crate) checkpoint: BTreeMap<String, String>,
    seq: u64,
}

/// An allowed call in flight: the token for the backend and what `finish` needs.
pub struct InFlight<'a> {
    pub(crate) auth: Authorized,
    call: Call<'a>,
    started: Instant,
    pub(crate) span: tracing::Span,
}

impl StepContext {
    pub(crate) fn new(
        run_id: String,
        step: String,
        grants: Grants,
        backend: Arc<dyn CloudBackend>,
        hooks: Arc<dyn CallHooks>,
        events: EventSink,
    ) -> Self {
        StepContext {
            run_id,
            step,
            grants,
            backend,
            hooks,
            events,
            checkpoint: BTreeMap::new(),
            seq: 0,
        }
    }

    /// The policy point: checks `call` against the step's grants and the hooks before any I/O.
    /// A refusal is a `denied` error naming the missing grant, and is reported as an event.
    pub(crate) fn authorize<'a>(&mut self, call: Call<'a>) -> Result<InFlight<'a>, CapabilityError> {
        if let (Some(action), Some(resource)) = (call.action, call.resource) {
            let path = ResourcePath::parse(resource).map_err(|e| {
                CapabilityError::guest(ErrorKind::Invalid, "InvalidResourceId", format!("{}: {e}", call.name))
            })?;
            if !self.grants.allows(action, &path) {
                (self.events)(&Event::CallDenied {
                    step: self.step.clone(),
                    call: call.name.to_string(),
                    action: action.to_string(),
                    resource: resource.to_string(),
                });
                tracing::warn!(step = %self.step, call = call.name, %action, resource, "denied by grants");
                return Err(CapabilityError::guest(
                    ErrorKind::Denied,
                    "GrantMissing",
                    format!(
                        "{} needs the `{action}` grant on {resource}, which step `{}` does not have; \
                         add it to the step's grants",
                        call.name, self.step
                    ),
                ));
            }
        }
        self.hooks.before(&self.step, &call).map_err(CapabilityError::Guest)?;
        self.seq += 1;
        let span = tracing::Span::none();
        Ok(InFlight {
            auth: Authorized {
                run_id: self.run_id.clone(),
                step: self.step.clone(),
                call: call.name,
                seq: self.seq,
            },
            call,
            started: Instant::now(),
            span,
        })
    }

    /// Reports the outcome of an allowed call to the hooks and the event sink.
    pub(crate) fn finish<T>(
        &self,
        flight: InFlight<'_>,
        result: Result<T, CapabilityError>,
    ) -> Result<T, CapabilityError> {
        let duration = flight.started.elapsed();
        let ok = result.is_ok();
        flight.span.in_scope(|| match &result {
            Ok(_) => tracing::debug!(?duration, "ok"),
            Err(e) => tracing::debug!(?duration, error = %e, "failed"),
        });
        self.hooks.after(&self.step, &flight.call, ok, duration);
        (self.events)(&Event::Call {
            step: self.step.clone(),
            call: flight.call.name.to_string(),
            resource: flight.call.resource.map(str::to_string),
            ok,
            duration,
        });
        result
    }

    /// A backend handle, cloned so the context can be borrowed again while the call awaits.
    pub(crate) fn backend(&self) -> Arc<dyn CloudBackend> {
        Arc::clone(&self.backend)
    }
}

/// Shorthand for a capability function: authorise, call the backend, finish.
macro_rules! capability_call {
    ($ctx:expr, $name:literal, $action:expr, $resource:expr, |$backend:ident, $auth:ident| $body:expr) => {{
        let resource: Option<&str> = $resource;
        let mut flight = $ctx.authorize($crate::capabilities::Call {
            name: $name,
            action: $action,
            resource,
        })?;
        // One span per capability with a stable name, e.g. `kmsflow.aks.set-kms` (`-v` shows them).
        flight.span = tracing::info_span!(concat!("kmsflow.", $name), step = %$ctx.step, resource);
        let $backend = $ctx.backend();
        let $auth = &flight.auth;
        let call = $body;
        let result = tracing::Instrument::instrument(call, flight.span.clone()).await;
        $ctx.finish(flight, result)
    }};
}
pub(crate) use capability_call;
