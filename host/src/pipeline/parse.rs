//! One pipeline file's TOML → its parts, strictly: unknown keys, bad grants, bad durations and
//! sizes, bad variable declarations, bad references and conditions are errors with a location.
//! Includes, variable binding and cross-file checks are in [`super::load`].

use super::template::{self, Condition};
use super::{Location, ParamEntry, PipelineError, PluginRef, RetrySpec, VarSpec};
use crate::limits::StepLimits;
use crate::wit::types::{ErrorKind, ValueType};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    pipeline: Option<RawHeader>,
    #[serde(default)]
    include: Vec<Spanned<String>>,
    #[serde(default)]
    vars: BTreeMap<Spanned<String>, Spanned<RawVar>>,
    #[serde(default)]
    steps: Vec<Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: String,
    /// Fragments whose `[vars]` and `[[steps]]` come first (also allowed at the top level).
    #[serde(default)]
    include: Vec<Spanned<String>>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVar {
    #[serde(rename = "type")]
    ty: Spanned<String>,
    default: Option<Spanned<toml::Value>>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    /// A step that is only `include = "FILE"` stands for that file's steps, in place.
    include: Option<Spanned<String>>,
    id: Option<Spanned<String>>,
    uses: Option<Spanned<String>>,
    sha256: Option<Spanned<String>>,
    #[serde(default)]
    with: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default)]
    grants: Vec<RawGrant>,
    timeout: Option<Spanned<String>>,
    limits: Option<RawLimits>,
    retry: Option<Spanned<RawRetry>>,
    when: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    scope: Spanned<String>,
    actions: Spanned<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory: Option<Spanned<String>>,
    instances: Option<usize>,
    tables: Option<usize>,
    table_elements: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    attempts: Spanned<u32>,
    backoff: Option<Spanned<String>>,
    #[serde(default)]
    on: Option<Spanned<Vec<String>>>,
}

/// Turns byte offsets into line/column locations in one file.
pub(super) struct Locator<'a> {
    pub text: &'a str,
    pub file: &'a str,
}

impl Locator<'_> {
    pub fn at(&self, offset: usize) -> Location {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Location {
            file: self.file.to_string(),
            line,
            column,
        }
    }

    pub fn error(&self, span: Range<usize>, message: impl Into<String>, hint: Option<&str>) -> PipelineError {
        PipelineError {
            location: self.at(span.start),
            message: message.into(),
            hint: hint.map(str::to_string),
        }
    }
}

pub(super) fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A grant as written: its scope may still contain `${vars.…}`.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantSpec {
    pub scope: String,
    pub actions: Vec<String>,
    pub scope_location: Location,
    pub actions_location: Location,
}

/// A step as written in one file.
#[derive(Debug, Clone, PartialEq)]
pub struct RawStepSpec {
    pub id: String,
    pub id_location: Location,
    pub uses: PluginRef,
    pub uses_location: Location,
    pub with: Vec<ParamEntry>,
    pub grants: Vec<GrantSpec>,
    pub limits: StepLimits,
    pub retry: RetrySpec,
    pub when: Option<(Condition, Location)>,
    pub location: Location,
}

/// A `[[steps]]` entry: a step, or another file's steps in its place.
#[derive(Debug, Clone, PartialEq)]
pub enum StepEntry {
    Step(Box<RawStepSpec>),
    Include(PathBuf, Location),
}

/// What one file declares.
#[derive(Debug, Clone)]
pub struct FileParts {
    pub header: Option<(String, String, Option<String>)>,
    pub includes: Vec<(PathBuf, Location)>,
    pub vars: Vec<VarSpec>,
    pub steps: Vec<StepEntry>,
}

fn value_type(name: &str) -> Option<(ValueType, Option<super::ResourceKind>)> {
    use super::ResourceKind;
    Some(match name {
        "text" => (ValueType::Text, None),
        "integer" => (ValueType::Integer, None),
        "flag" => (ValueType::Flag, None),
        "text-list" => (ValueType::TextList, None),
        "resource-group" => (ValueType::Text, Some(ResourceKind::ResourceGroup)),
        "cluster" => (ValueType::Text, Some(ResourceKind::Cluster)),
        "vault" => (ValueType::Text, Some(ResourceKind::Vault)),
        "resource-id" => (ValueType::Text, Some(ResourceKind::Any)),
        _ => return None,
    })
}

/// Whether `value` is of type `ty`.
pub(super) fn has_type(value: &toml::Value, ty: ValueType) -> bool {
    match (ty, value) {
        (ValueType::Text, toml::Value::String(_)) => true,
        (ValueType::Integer, toml::Value::Integer(_)) => true,
        (ValueType::Flag, toml::Value::Boolean(_)) => true,
        (ValueType::TextList, toml::Value::Array(items)) => items.iter().all(|v| v.is_str()),
        _ => false,
    }
}

fn error_kind(name: &str) -> Option<ErrorKind> {
    Some(match name {
        "denied" => ErrorKind::Denied,
        "not-found" => ErrorKind::NotFound,
        "conflict" => ErrorKind::Conflict,
        "invalid" => ErrorKind::Invalid,
        "precondition" => ErrorKind::Precondition,
        "throttled" => ErrorKind::Throttled,
        "unavailable" => ErrorKind::Unavailable,
        "internal" => ErrorKind::Internal,
        _ => return None,
    })
}

/// Parses one file's `text`; relative plugin and include paths resolve against `base`.
pub fn parse_file(text: &str, file: &str, base: &Path) -> Result<FileParts, PipelineError> {
    let loc = Locator { text, file };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let hint = e
            .message()
            .contains("unknown field")
            .then_some("check the spelling; the README's \"Pipelines\" section lists every key");
        loc.error(span, e.message().trim().to_string(), hint)
    })?;
    let header_includes = raw.pipeline.as_ref().map(|h| h.include.as_slice()).unwrap_or_default();
    let includes = header_includes
        .iter()
        .chain(raw.include.iter())
        .map(|i| (base.join(i.get_ref()), loc.at(i.span().start)))
        .collect();
    let mut vars = Vec::new();
    for (name, spec) in &raw.vars {
        let n = name.get_ref();
        if !is_identifier(n) {
            return Err(loc.error(
                name.span(),
                format!("variable name `{n}` is not valid"),
                Some("use lowercase letters, digits, `-` and `_`"),
            ));
        }
        let v = spec.get_ref();
        let (ty, resource) = value_type(v.ty.get_ref()).ok_or_else(|| {
            loc.error(
                v.ty.span(),
                format!("unknown variable type `{}`", v.ty.get_ref()),
                Some("use text, integer, flag, text-list, resource-group, cluster, vault or resource-id"),
            )
        })?;
        if let Some(d) = &v.default {
            if !has_type(d.get_ref(), ty) {
                return Err(loc.error(
                    d.span(),
                    format!("the default of `{n}` is not a {}", v.ty.get_ref()),
                    None,
                ));
            }
        }
        vars.push(VarSpec {
            name: n.clone(),
            ty,
            resource,
            default: v.default.as_ref().map(|d| d.get_ref().clone()),
            required: v.required,
            description: v.description.clone(),
            location: loc.at(name.span().start),
        });
    }
    let mut steps = Vec::new();
    for spanned in raw.steps {
        let step_span = spanned.span();
        let step = spanned.into_inner();
        if let Some(inc) = &step.include {
            let alone = step.id.is_none()
                && step.uses.is_none()
                && step.sha256.is_none()
                && step.with.is_empty()
                && step.grants.is_empty()
                && step.timeout.is_none()
                && step.limits.is_none()
                && step.retry.is_none()
                && step.when.is_none();
            if !alone {
                return Err(loc.error(
                    inc.span(),
                    "a [[steps]] entry with `include` can have no other keys",
                    Some("put the included steps' parameters in [vars] and pass them with ${vars.…}"),
                ));
            }
            steps.push(StepEntry::Include(base.join(inc.get_ref()), loc.at(inc.span().start)));
            continue;
        }
        let (Some(id_spanned), Some(uses_spanned)) = (&step.id, &step.uses) else {
            let missing = if step.id.is_none() { "id" } else { "uses" };
            return Err(loc.error(
                step_span,
                format!("a step needs `{missing}`"),
                Some("each [[steps]] has id = \"...\" and uses = \"plugin\" (or only include = \"file.toml\")"),
            ));
        };
        let id = id_spanned.get_ref();
        if !is_identifier(id) {
            return Err(loc.error(
                id_spanned.span(),
                format!("step id `{id}` is not valid"),
                Some("use lowercase letters, digits, `-` and `_`"),
            ));
        }
        let uses = plugin_ref(&loc, &step, uses_spanned, base)?;
        let mut with = Vec::new();
        for (name, value) in &step.with {
            template::refs(value.get_ref()).map_err(|e| loc.error(value.span(), e, None))?;
            with.push(ParamEntry {
                name: name.get_ref().clone(),
                value: value.get_ref().clone(),
                location: loc.at(name.span().start),
                from: None,
            });
        }
        let grants = step
            .grants
            .iter()
            .map(|g| GrantSpec {
                scope: g.scope.get_ref().clone(),
                actions: g.actions.get_ref().clone(),
                scope_location: loc.at(g.scope.span().start),
                actions_location: loc.at(g.actions.span().start),
            })
            .collect();
        let when = match &step.when {
            Some(w) => Some((
                Condition::parse(w.get_ref()).map_err(|e| loc.error(w.span(), format!("invalid `when`: {e}"), None))?,
                loc.at(w.span().start),
            )),
            None => None,
        };
        steps.push(StepEntry::Step(Box::new(RawStepSpec {
            id: id.clone(),
            id_location: loc.at(id_spanned.span().start),
            uses_location: loc.at(uses_spanned.span().start),
            uses,
            with,
            grants,
            limits: limits(&loc, &step)?,
            retry: retry(&loc, &step)?,
            when,
            location: loc.at(step_span.start),
        })));
    }
    Ok(FileParts {
        header: raw.pipeline.map(|h| (h.name, h.description, h.version)),
        includes,
        vars,
        steps,
    })
}

fn plugin_ref(
    loc: &Locator<'_>,
    step: &RawStep,
    uses_spanned: &Spanned<String>,
    base: &Path,
) -> Result<PluginRef, PipelineError> {
    let uses = uses_spanned.get_ref();
    let is_path = uses.ends_with(".wasm") || uses.contains('/');
    match (&step.sha256, is_path) {
        (Some(sha), true) => {
            let sha = sha.get_ref().to_ascii_lowercase();
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(loc.error(
                    step.sha256.as_ref().map_or(0..0, |s| s.span()),
                    "sha256 must be 64 hexadecimal characters",
                    None,
                ));
            }
            Ok(PluginRef::File {
                path: base.join(uses),
                sha256: sha,
            })
        }
        (None, true) => Err(loc.error(
            uses_spanned.span(),
            format!("plugin file `{uses}` is not pinned"),
            Some("add sha256 = \"...\" (print it with `sha256sum FILE`)"),
        )),
        (Some(sha), false) => Err(loc.error(
            sha.span(),
            "sha256 applies only to plugin files; built-in plugins are pinned by the binary",
            None,
        )),
        (None, false) => Ok(PluginRef::Builtin(uses.clone())),
    }
}

fn limits(loc: &Locator<'_>, step: &RawStep) -> Result<StepLimits, PipelineError> {
    let mut limits = StepLimits::default();
    if let Some(t) = &step.timeout {
        limits.timeout = humantime::parse_duration(t.get_ref()).map_err(|e| {
            loc.error(
                t.span(),
                format!("invalid timeout `{}`: {e}", t.get_ref()),
                Some("write e.g. \"30s\", \"5m\" or \"1h\""),
            )
        })?;
        if limits.timeout.is_zero() {
            return Err(loc.error(t.span(), "the timeout must be positive", None));
        }
    }
    if let Some(l) = &step.limits {
        if let Some(m) = &l.memory {
            let size: bytesize::ByteSize = m.get_ref().parse().map_err(|e| {
                loc.error(
                    m.span(),
                    format!("invalid memory size `{}`: {e}", m.get_ref()),
                    Some("write e.g. \"64MiB\""),
                )
            })?;
            limits.memory_bytes = usize::try_from(size.as_u64()).unwrap_or(usize::MAX);
        }
        limits.instances = l.instances.unwrap_or(limits.instances);
        limits.tables = l.tables.unwrap_or(limits.tables);
        limits.table_elements = l.table_elements.unwrap_or(limits.table_elements);
    }
    Ok(limits)
}

fn retry(loc: &Locator<'_>, step: &RawStep) -> Result<RetrySpec, PipelineError> {
    let Some(r) = &step.retry else {
        return Ok(RetrySpec::default());
    };
    let raw = r.get_ref();
    let attempts = *raw.attempts.get_ref();
    if !(1..=20).contains(&attempts) {
        return Err(loc.error(raw.attempts.span(), "retry.attempts must be 1 to 20", None));
    }
    let backoff = match &raw.backoff {
        Some(b) => humantime::parse_duration(b.get_ref()).map_err(|e| {
            loc.error(
                b.span(),
                format!("invalid backoff `{}`: {e}", b.get_ref()),
                Some("write e.g. \"5s\""),
            )
        })?,
        None => Duration::from_secs(1),
    };
    let on = match &raw.on {
        Some(kinds) => kinds
            .get_ref()
            .iter()
            .map(|k| {
                error_kind(k).ok_or_else(|| {
                    loc.error(
                        kinds.span(),
                        format!("unknown error kind `{k}` in retry.on"),
                        Some("use throttled, unavailable, conflict, precondition, not-found, denied, invalid or internal"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => vec![ErrorKind::Throttled, ErrorKind::Unavailable],
    };
    Ok(RetrySpec { attempts, backoff, on })
}
