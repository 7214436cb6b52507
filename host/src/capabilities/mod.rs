//! The host side of every WIT interface, one module each, and the single policy point that every
//! capability call passes through before any I/O.
//!
//! A capability function does three things: [`StepContext::authorize`] (grant check, hooks,
//! tracing, and an [`Authorized`] token), the backend call with that token, and
//! [`StepContext::finish`] (outcome to hooks and events). Nothing else may reach a backend,
//! because nothing else can mint the token.

mod aks;
pub mod arm;
mod checkpoint;
mod identity;
mod keyvault;
mod kubernetes;
mod log;
mod types;

use crate::backend::{Authorized, CloudBackend};
use crate::cloud::wire::WireReport;
use crate::events::{Event, EventSink};
use crate::grants::{Action, Grants};
use crate::names::NameError;
use crate::resource_id::{shorten, ResourceId};
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
#[derive(Debug, Clone)]
pub struct Call<'a> {
    /// Stable name, `interface.function` as in the WIT (`keyvault.get-vault`).
    pub name: &'static str,
    /// Every action the call needs, all on `resource`; empty for calls that need no grant
    /// (`log`, `checkpoint`, `whoami`).
    pub actions: Vec<Action>,
    /// The ARM resource the call touches, parsed and validated.
    pub resource: Option<&'a ResourceId>,
    /// The call's other arguments, as `Debug` text (never a secret: the WIT has no type for one).
    pub args: String,
}

impl Call<'_> {
    /// Whether the call may change something outside the host.
    pub fn writes(&self) -> bool {
        self.actions.iter().any(|a| *a != Action::Read)
    }

    /// The actions as the journal spells them (`write+kms`).
    pub fn actions_text(&self) -> String {
        self.actions.iter().map(|a| a.as_str()).collect::<Vec<_>>().join("+")
    }
}

/// How an allowed call ended, for the hooks.
#[derive(Debug)]
pub struct CallOutcome<'a> {
    /// The call's sequence number within the step attempt (1-based).
    pub seq: u64,
    /// The error the plugin saw, if any (`None` also for a host fault, see `trapped`).
    pub error: Option<&'a WitError>,
    /// A host fault that fails the step.
    pub trapped: bool,
    pub duration: Duration,
    /// Requests, retries and request ids on the wire.
    pub wire: &'a WireReport,
}

/// Extra policy and observation at the policy point, with defaulted methods: the place where
/// journaling (issue 6) and a platform team's own rules plug in.
pub trait CallHooks: Send + Sync {
    /// Runs after the grant check allowed `call`, before any I/O. An `Err` denies it.
    fn before(&self, step: &str, call: &Call<'_>) -> Result<(), WitError> {
        let _ = (step, call);
        Ok(())
    }

    /// Runs when an allowed call finished, before its result reaches the plugin (a journal
    /// writes and syncs here, so the effect is recorded before it is reported done).
    /// An `Err` (the journal cannot be written) fails the step: an unrecorded effect would break
    /// resume.
    fn after(&self, step: &str, call: &Call<'_>, outcome: &CallOutcome<'_>) -> Result<(), String> {
        let _ = (step, call, outcome);
        Ok(())
    }

    /// Runs when the step writes its checkpoint map (`None`: a removal); an `Err` fails the step,
    /// since `put` promises durability.
    fn checkpoint(&self, step: &str, key: &str, value: Option<&str>) -> Result<(), String> {
        let _ = (step, key, value);
        Ok(())
    }

    /// Runs when the grants refused a call (nothing was sent).
    fn denied(&self, step: &str, call: &Call<'_>) {
        let _ = (step, call);
    }
}

/// Hooks that do nothing.
#[derive(Debug, Default)]
pub struct NoHooks;

impl CallHooks for NoHooks {}

/// Largest checkpoint key and value a plugin may store.
pub(crate) use crate::limits::{CHECKPOINT_KEY_MAX, CHECKPOINT_VALUE_MAX, REFUSED_CALLS_MAX};

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
    /// Calls refused so far (grants, invalid ids, `arm` classification).
    refused: u64,
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
            refused: 0,
        }
    }

    /// Parses a resource id argument at the WIT boundary, and checks that it names what the
    /// call expects. A refused id is an `invalid` error, and is journaled and reported like a
    /// denied call (with the id shortened): nothing was sent.
    pub(crate) fn resource_arg(
        &mut self,
        name: &'static str,
        actions: &[Action],
        raw: &str,
        expect: Expect,
    ) -> Result<ResourceId, CapabilityError> {
        let refused = |reason: String| (reason, shorten(raw));
        let outcome = match ResourceId::parse(raw) {
            Err(e) => Err(refused(e.to_string())),
            Ok(id) => match expect {
                Expect::Any => Ok(id),
                Expect::Subscription if id.is_subscription() => Ok(id),
                Expect::Subscription => Err(refused(format!(
                    "`{}` is not a subscription id (/subscriptions/{{id}})",
                    shorten(raw)
                ))),
                Expect::Resource(t) if id.is_resource_of(t) => Ok(id),
                Expect::Resource(t) => Err(refused(format!(
                    "`{}` is not a {t} resource id (/subscriptions/{{s}}/resourceGroups/{{rg}}/providers/{t}/{{name}})",
                    shorten(raw)
                ))),
            },
        };
        outcome.map_err(|(reason, shown)| {
            let call = Call {
                name,
                actions: actions.to_vec(),
                resource: None,
                args: format!("refused resource id `{shown}`"),
            };
            if let Err(trap) = self.report_denied(&call, &shown) {
                return trap;
            }
            tracing::warn!(step = %self.step, call = name, "refused resource id: {reason}");
            CapabilityError::guest(ErrorKind::Invalid, "InvalidResourceId", format!("{name}: {reason}"))
        })
    }

    /// Checks a non-id argument (a name, a version, a bounded text) before any I/O.
    pub(crate) fn arg(&self, name: &'static str, checked: Result<(), NameError>) -> Result<(), CapabilityError> {
        checked.map_err(|e| CapabilityError::guest(ErrorKind::Invalid, "InvalidArgument", format!("{name}: {e}")))
    }

    /// Journals and reports a refused call; past [`REFUSED_CALLS_MAX`] a step is probing, not
    /// working, and fails (a trap) instead of writing one more synced record.
    fn report_denied(&mut self, call: &Call<'_>, resource: &str) -> Result<(), CapabilityError> {
        self.refused += 1;
        if self.refused > REFUSED_CALLS_MAX {
            return Err(CapabilityError::trap(wasmtime::Error::msg(format!(
                "step `{}` made more than {REFUSED_CALLS_MAX} refused calls; stopped",
                self.step
            ))));
        }
        self.hooks.denied(&self.step, call);
        (self.events)(&Event::CallDenied {
            step: self.step.clone(),
            call: call.name.to_string(),
            action: call.actions_text(),
            resource: resource.to_string(),
        });
        Ok(())
    }

    /// The policy point: checks `call` against the step's grants and the hooks before any I/O.
    /// A refusal is a `denied` error naming the missing grant, and is reported as an event.
    pub(crate) fn authorize<'a>(&mut self, call: Call<'a>) -> Result<InFlight<'a>, CapabilityError> {
        if let Some(resource) = call.resource {
            if let Some(action) = self.grants.missing(&call.actions, resource) {
                self.report_denied(&call, &resource.to_string())?;
                tracing::warn!(step = %self.step, call = call.name, %action, %resource, "denied by grants");
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
        } else if !call.actions.is_empty() {
            return Err(CapabilityError::trap(wasmtime::Error::msg(format!(
                "{}: a call that needs a grant names no resource",
                call.name
            ))));
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
        wire: WireReport,
    ) -> Result<T, CapabilityError> {
        let duration = flight.started.elapsed();
        let ok = result.is_ok();
        flight.span.in_scope(|| match &result {
            Ok(_) => tracing::debug!(?duration, requests = wire.requests, retries = wire.retries, "ok"),
            Err(e) => {
                tracing::debug!(?duration, requests = wire.requests, retries = wire.retries, error = %e, "failed")
            }
        });
        let error = match &result {
            Err(CapabilityError::Guest(e)) => Some(e),
            _ => None,
        };
        let outcome = CallOutcome {
            seq: flight.auth.seq,
            error,
            trapped: matches!(result, Err(CapabilityError::Trap(_))),
            duration,
            wire: &wire,
        };
        if let Err(e) = self.hooks.after(&self.step, &flight.call, &outcome) {
            return Err(CapabilityError::trap(wasmtime::Error::msg(format!(
                "{}: the result could not be recorded: {e}",
                flight.call.name
            ))));
        }
        (self.events)(&Event::Call {
            step: self.step.clone(),
            call: flight.call.name.to_string(),
            resource: flight.call.resource.map(ToString::to_string),
            ok,
            duration,
            retries: wire.retries,
        });
        result
    }

    /// Where the clients' waiting notices go: the step's progress line.
    pub(crate) fn notices(&self) -> crate::cloud::wire::Notices {
        let events = self.events.clone();
        let step = self.step.clone();
        Arc::new(move |message: &str| {
            events(&Event::Progress {
                step: step.clone(),
                label: crate::limits::truncate(message, crate::limits::PROGRESS_LABEL_MAX),
                done: 0,
                total: None,
            })
        })
    }

    /// A backend handle, cloned so the context can be borrowed again while the call awaits.
    pub(crate) fn backend(&self) -> Arc<dyn CloudBackend> {
        Arc::clone(&self.backend)
    }
}

/// What a resource id argument must name.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Expect {
    /// Any resource id (a scope, a generic ARM path).
    Any,
    /// `/subscriptions/{id}`.
    Subscription,
    /// One resource of this provider type, e.g. `Microsoft.KeyVault/vaults`.
    Resource(&'static str),
}

/// The provider types the dedicated capabilities take.
pub(crate) const CLUSTER: Expect = Expect::Resource("Microsoft.ContainerService/managedClusters");
pub(crate) const VAULT: Expect = Expect::Resource("Microsoft.KeyVault/vaults");
pub(crate) const IDENTITY: Expect = Expect::Resource("Microsoft.ManagedIdentity/userAssignedIdentities");

/// Shorthand for a capability function: authorise, call the backend, finish. The body must be
/// one backend method call, `|b, auth| b.method(auth, args…)`, so that the arguments can be
/// recorded (as `Debug` text: no WIT argument can carry a secret value or a token). `resource`
/// is an already parsed `Option<&ResourceId>` (see [`StepContext::resource_arg`]).
macro_rules! capability_call {
    ($ctx:expr, $name:literal, $actions:expr, $resource:expr,
     |$backend:ident, $auth:ident| $b:ident . $method:ident ( $a:ident $(, $arg:expr)* $(,)? )) => {{
        let resource: Option<&$crate::resource_id::ResourceId> = $resource;
        let mut flight = $ctx.authorize($crate::capabilities::Call {
            name: $name,
            actions: $actions.to_vec(),
            resource,
            args: $crate::capabilities::args_text(&($($arg,)*)),
        })?;
        // One span per capability with a stable name, e.g. `kmsflow.aks.set-kms` (`-v` shows them).
        let shown = resource.map(ToString::to_string);
        flight.span = tracing::info_span!(concat!("kmsflow.", $name), step = %$ctx.step, resource = shown.as_deref());
        let $backend = $ctx.backend();
        let $auth = &flight.auth;
        let call = $crate::cloud::wire::collect_noticing($b.$method($a $(, $arg)*), $ctx.notices());
        let (result, wire) = tracing::Instrument::instrument(call, flight.span.clone()).await;
        $ctx.finish(flight, result, wire)
    }};
}
pub(crate) use capability_call;

/// Longest argument text kept for the journal.
const ARGS_MAX: usize = 1024;

/// The arguments of a call as the journal keeps them.
pub(crate) fn args_text(args: &impl fmt::Debug) -> String {
    let mut text = format!("{args:?}");
    if text.len() > ARGS_MAX {
        let mut cut = ARGS_MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}
