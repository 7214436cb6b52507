//! A pipeline file and its includes → a [`Pipeline`] bound to its variables: include cycles,
//! duplicate step ids, undefined variables, references to later steps, and variable values of the
//! wrong type are all reported with a location before anything runs.

use super::parse::{has_type, parse_file, RawStepSpec, StepEntry};
use super::template::{self, Condition, Ref};
use super::{Location, ParamEntry, Pipeline, PipelineError, StepSpec, VarInputs, VarSpec};
use crate::grants::{Grant, Grants};
use crate::limits::{read_text_file, FileError, PIPELINE_FILE_MAX, VARS_FILE_MAX};
use crate::plugin::sha256_hex;
use crate::wit::types::ValueType;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn nowhere(file: &str) -> Location {
    Location {
        file: file.to_string(),
        line: 0,
        column: 0,
    }
}

fn err(location: Location, message: impl Into<String>, hint: Option<String>) -> PipelineError {
    PipelineError {
        location,
        message: message.into(),
        hint,
    }
}

/// A file and everything it includes, expanded: variables in override order (included first),
/// steps in run order, and every file's name and text for the pipeline's hash.
#[derive(Default)]
struct Expanded {
    vars: Vec<VarSpec>,
    steps: Vec<RawStepSpec>,
    texts: Vec<(String, String)>,
    header: Option<(String, String, Option<String>)>,
}

/// Loads `path`, expanding its includes (top-level ones first, step-level ones in place).
fn load_tree(
    path: &Path,
    name: &str,
    included_from: Option<&Location>,
    stack: &mut Vec<PathBuf>,
) -> Result<Expanded, PipelineError> {
    let at = || included_from.cloned().unwrap_or_else(|| nowhere(name));
    let text = read_text_file(path, PIPELINE_FILE_MAX, "pipeline files").map_err(|e| {
        let hint = match (&e, included_from) {
            (FileError::Io { .. }, Some(_)) => Some("include paths are relative to the including file".to_string()),
            (FileError::Io { .. }, None) => None,
            _ => Some("a pipeline and each file it includes is a regular TOML file of at most 1 MiB".to_string()),
        };
        // Located at the file itself, the message need not name it again.
        let message = if included_from.is_some() {
            e.to_string()
        } else {
            e.reason()
        };
        err(at(), message, hint)
    })?;
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if let Some(first) = stack.iter().position(|p| *p == canonical) {
        let chain: Vec<String> = stack[first..]
            .iter()
            .chain(std::iter::once(&canonical))
            .map(|p| {
                p.file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect();
        return Err(err(
            at(),
            format!("include cycle: {}", chain.join(" → ")),
            Some("a file cannot include itself, directly or through others".into()),
        ));
    }
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let parts = parse_file(&text, name, &base)?;
    if included_from.is_some() && parts.header.is_some() {
        return Err(err(
            Location {
                file: name.to_string(),
                line: 1,
                column: 1,
            },
            "an included file cannot have a [pipeline] table",
            Some("keep [pipeline] in the file you run; fragments hold [vars] and [[steps]]".into()),
        ));
    }
    stack.push(canonical);
    let mut out = Expanded {
        header: parts.header.clone(),
        ..Expanded::default()
    };
    fn absorb(inner: Expanded, out: &mut Expanded, with_steps: bool) -> Vec<RawStepSpec> {
        out.vars.extend(inner.vars);
        out.texts.extend(inner.texts);
        if with_steps {
            out.steps.extend(inner.steps);
            Vec::new()
        } else {
            inner.steps
        }
    }
    for (inc, location) in &parts.includes {
        let inner = load_tree(inc, &inc.display().to_string(), Some(location), stack)?;
        absorb(inner, &mut out, true);
    }
    let mut own_steps = Vec::new();
    for entry in parts.steps {
        match entry {
            StepEntry::Step(s) => own_steps.push(*s),
            StepEntry::Include(inc, location) => {
                let inner = load_tree(&inc, &inc.display().to_string(), Some(&location), stack)?;
                own_steps.extend(absorb(inner, &mut out, false));
            }
        }
    }
    stack.pop();
    out.vars.extend(parts.vars);
    out.steps.extend(own_steps);
    out.texts.push((name.to_string(), text));
    Ok(out)
}

/// A `--set` or `--vars` value, converted to the variable's type.
fn convert_text(text: &str, ty: ValueType) -> Option<toml::Value> {
    Some(match ty {
        ValueType::Text => toml::Value::String(text.to_string()),
        ValueType::Integer => toml::Value::Integer(text.trim().parse().ok()?),
        ValueType::Flag => toml::Value::Boolean(text.trim().parse().ok()?),
        ValueType::TextList => toml::Value::Array(
            text.split(',')
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
    })
}

fn type_word(ty: ValueType) -> &'static str {
    match ty {
        ValueType::Text => "text",
        ValueType::Integer => "integer",
        ValueType::Flag => "flag",
        ValueType::TextList => "text-list",
    }
}

/// The variables' values: defaults, then `--vars` files, then `--set`.
/// Variable values, and where each value that did not come from the pipeline itself was given
/// (`--set NAME`, `FILE:line:column` of a `--vars` file).
type Bound = (BTreeMap<String, toml::Value>, BTreeMap<String, String>);

/// Binds the variables (see [`Bound`]).
fn bind_vars(vars: &BTreeMap<String, VarSpec>, inputs: &VarInputs) -> Result<Bound, PipelineError> {
    let mut origins: BTreeMap<String, String> = BTreeMap::new();
    let known = || {
        let names: Vec<&str> = vars.keys().map(String::as_str).collect();
        Some(if names.is_empty() {
            "the pipeline declares no [vars]".to_string()
        } else {
            format!("its variables are: {}", names.join(", "))
        })
    };
    let mut values: BTreeMap<String, toml::Value> = vars
        .iter()
        .filter_map(|(n, v)| v.default.clone().map(|d| (n.clone(), d)))
        .collect();
    for file in &inputs.files {
        let name = file.display().to_string();
        let text = read_text_file(file, VARS_FILE_MAX, "variables files").map_err(|e| {
            let message = match e {
                FileError::Io { source, .. } => format!("cannot read the variables file: {source}"),
                refused => format!("the variables file is {}", refused.reason()),
            };
            err(nowhere(&name), message, None)
        })?;
        let table: BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>> =
            toml::from_str(&text).map_err(|e| {
                let loc = super::parse::Locator {
                    text: &text,
                    file: &name,
                };
                loc.error(e.span().unwrap_or(0..0), e.message().trim().to_string(), None)
            })?;
        let loc = super::parse::Locator {
            text: &text,
            file: &name,
        };
        for (k, v) in table {
            let spec = vars.get(k.get_ref()).ok_or_else(|| {
                loc.error(
                    k.span(),
                    format!("unknown variable `{}`", k.get_ref()),
                    known().as_deref(),
                )
            })?;
            if !has_type(v.get_ref(), spec.ty) {
                return Err(loc.error(
                    v.span(),
                    format!("variable `{}` must be {}", k.get_ref(), type_word(spec.ty)),
                    Some(&spec.description),
                ));
            }
            origins.insert(k.get_ref().clone(), loc.at(v.span().start).to_string());
            values.insert(k.into_inner(), v.into_inner());
        }
    }
    for (k, text) in &inputs.set {
        let at = nowhere(&format!("--set {k}"));
        let spec = vars
            .get(k)
            .ok_or_else(|| err(at.clone(), format!("unknown variable `{k}`"), known()))?;
        let value = convert_text(text, spec.ty).ok_or_else(|| {
            err(
                at.clone(),
                format!("variable `{k}` must be {}, not `{text}`", type_word(spec.ty)),
                Some(spec.description.clone()),
            )
        })?;
        origins.insert(k.clone(), format!("--set {k}"));
        values.insert(k.clone(), value);
    }
    for (k, v) in &inputs.values {
        let at = nowhere(&format!("recorded variable {k}"));
        let spec = vars
            .get(k)
            .ok_or_else(|| err(at.clone(), format!("unknown variable `{k}`"), known()))?;
        if !has_type(v, spec.ty) {
            return Err(err(at, format!("variable `{k}` must be {}", type_word(spec.ty)), None));
        }
        values.insert(k.clone(), v.clone());
    }
    // Resource-typed values become full ids: resource groups first, since a bare cluster or
    // vault name lives in the pipeline's resource group.
    let sub = inputs.subscription.as_deref();
    if let Some(g) = &inputs.group {
        if vars.contains_key("resource-group") && !inputs.set.iter().any(|(k, _)| k == "resource-group") {
            values.insert("resource-group".to_string(), toml::Value::String(g.clone()));
            origins.insert("resource-group".to_string(), "-g".to_string());
        }
    }
    let mut group: Option<String> = match &inputs.group {
        Some(g) if !(inputs.allow_unknown && sub.is_none() && !g.starts_with('/')) => Some(
            super::ResourceKind::ResourceGroup
                .expand(g, sub, None)
                .map_err(|e| err(nowhere("-g"), e, None))?,
        ),
        _ => None,
    };
    for kind_pass in [true, false] {
        for (name, spec) in vars {
            let Some(kind) = spec.resource else { continue };
            if (kind == super::ResourceKind::ResourceGroup) != kind_pass {
                continue;
            }
            let Some(toml::Value::String(text)) = values.get(name).cloned() else {
                continue;
            };
            if inputs.allow_unknown && sub.is_none() && !text.starts_with('/') {
                continue; // `validate` without a target: a short name stays as written.
            }
            let full = kind.expand(&text, sub, group.as_deref()).map_err(|e| {
                let given = origins
                    .get(name)
                    .map(|o| format!(" (given by {o})"))
                    .unwrap_or_default();
                err(
                    spec.location.clone(),
                    format!("variable `{name}`{given}: {e}"),
                    Some(format!(
                        "a {} is a name, GROUP/NAME or a full resource id",
                        kind.type_name()
                    )),
                )
            })?;
            if kind == super::ResourceKind::ResourceGroup {
                group = Some(full.clone());
            }
            values.insert(name.clone(), toml::Value::String(full));
        }
    }
    for (name, spec) in vars {
        if spec.required && !values.contains_key(name) && !inputs.allow_unknown {
            return Err(err(
                spec.location.clone(),
                format!("variable `{name}` is required and has no value"),
                Some(format!(
                    "pass --set {name}=… or put it in a --vars file: {}",
                    spec.description
                )),
            ));
        }
    }
    Ok((values, origins))
}

/// `scope` with each unresolved `${vars.NAME}` replaced by a well-formed stand-in (a
/// subscription at the start, a segment elsewhere), so the rest of it can be checked.
fn probe_scope(scope: &str) -> String {
    let mut out = String::new();
    let mut rest = scope;
    while let Some(at) = rest.find("${vars.") {
        out.push_str(&rest[..at]);
        out.push_str(if out.is_empty() {
            "/subscriptions/unknown"
        } else {
            "unknown"
        });
        rest = match rest[at..].find('}') {
            Some(end) => &rest[at + end + 1..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

/// Checks that every reference of step `index` names a declared variable or an earlier step.
fn check_refs(
    refs: &[Ref],
    at: &Location,
    vars: &BTreeMap<String, VarSpec>,
    steps: &[RawStepSpec],
    index: usize,
    outputs_allowed: bool,
) -> Result<(), PipelineError> {
    for r in refs {
        match r {
            Ref::Var(v) if !vars.contains_key(v) => {
                let names: Vec<&str> = vars.keys().map(String::as_str).collect();
                return Err(err(
                    at.clone(),
                    format!("undefined variable `{v}`"),
                    Some(if names.is_empty() {
                        "declare it in a [vars] table".to_string()
                    } else {
                        format!("declare it in [vars]; declared: {}", names.join(", "))
                    }),
                ));
            }
            Ref::Output { .. } if !outputs_allowed => {
                return Err(err(
                    at.clone(),
                    format!("{r}: grants are fixed before the run starts and cannot use step outputs"),
                    Some("use a ${vars.…} variable".into()),
                ));
            }
            Ref::Output { step, .. } => match steps.iter().position(|s| s.id == *step) {
                Some(i) if i < index => {}
                Some(_) => {
                    return Err(err(
                        at.clone(),
                        format!("{r} refers to step `{step}`, which runs later"),
                        Some("a step can use the outputs of the steps before it".into()),
                    ))
                }
                None => {
                    return Err(err(
                        at.clone(),
                        format!("{r} refers to step `{step}`, which does not exist"),
                        None,
                    ))
                }
            },
            Ref::Var(_) => {}
        }
    }
    Ok(())
}

/// Loads the pipeline at `path` with its includes and binds its variables.
pub fn load(path: &Path, inputs: &VarInputs) -> Result<Pipeline, PipelineError> {
    let name = path.display().to_string();
    let tree = load_tree(path, &name, None, &mut Vec::new())?;
    let (pname, description, version) = tree.header.clone().ok_or_else(|| {
        err(
            Location {
                file: name.clone(),
                line: 1,
                column: 1,
            },
            "missing [pipeline] table",
            Some("start the file with [pipeline] and name = \"...\"".into()),
        )
    })?;
    let mut vars: BTreeMap<String, VarSpec> = BTreeMap::new();
    for v in &tree.vars {
        vars.insert(v.name.clone(), v.clone());
    }
    let mut raw_steps: Vec<RawStepSpec> = Vec::new();
    for s in &tree.steps {
        if let Some(first) = raw_steps.iter().find(|o| o.id == s.id) {
            return Err(err(
                s.id_location.clone(),
                format!("step id `{}` is used twice", s.id),
                Some(format!(
                    "step ids must be unique; the first is at {}",
                    first.id_location
                )),
            ));
        }
        raw_steps.push(s.clone());
    }
    // Texts only: the same files reached by another path (a resume uses the absolute one) hash
    // the same.
    let hasher_input: String = tree.texts.iter().map(|(_, t)| format!("{t}\0")).collect();
    if raw_steps.is_empty() {
        return Err(err(
            Location {
                file: name.clone(),
                line: 1,
                column: 1,
            },
            "the pipeline has no [[steps]]",
            Some("add a [[steps]] table with id and uses".into()),
        ));
    }
    for (i, s) in raw_steps.iter().enumerate() {
        for p in &s.with {
            let refs = template::refs(&p.value).map_err(|e| err(p.location.clone(), e, None))?;
            check_refs(&refs, &p.location, &vars, &raw_steps, i, true)?;
        }
        if let Some((c, at)) = &s.when {
            let refs = c.refs().map_err(|e| err(at.clone(), e, None))?;
            check_refs(&refs, at, &vars, &raw_steps, i, true)?;
        }
        for g in &s.grants {
            let refs = template::refs(&toml::Value::String(g.scope.clone()))
                .map_err(|e| err(g.scope_location.clone(), e, None))?;
            check_refs(&refs, &g.scope_location, &vars, &raw_steps, i, false)?;
        }
    }
    let (values, origins) = bind_vars(&vars, inputs)?;
    let unknown: BTreeMap<String, ValueType> = vars
        .iter()
        .filter(|(name, spec)| spec.required && !values.contains_key(*name))
        .map(|(name, spec)| (name.clone(), spec.ty))
        .collect();
    let lookup = |r: &Ref| match r {
        Ref::Var(v) => values.get(v).cloned(),
        Ref::Output { .. } => None,
    };
    let mut steps = Vec::new();
    for s in raw_steps {
        let mut with = Vec::new();
        for p in s.with {
            let value = template::substitute(&p.value, &lookup).map_err(|e| err(p.location.clone(), e, None))?;
            let given: Vec<String> = template::refs(&p.value)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|r| match r {
                    Ref::Var(v) => origins.get(&v).map(|o| format!("`{v}` from {o}")),
                    Ref::Output { .. } => None,
                })
                .collect();
            with.push(ParamEntry {
                name: p.name,
                value,
                location: p.location,
                from: (!given.is_empty()).then(|| given.join(", ")),
            });
        }
        let mut grants = Vec::new();
        for g in &s.grants {
            let scope = template::finish(
                template::substitute(&toml::Value::String(g.scope.clone()), &lookup)
                    .map_err(|e| err(g.scope_location.clone(), e, None))?,
            );
            let scope = scope.as_str().unwrap_or_default().to_string();
            if !unknown.is_empty() && scope.contains("${vars.") {
                // A scope with unknown variables: its known text and its actions are checked
                // now (the unknowns stand in as well-formed segments); it is bound at run time.
                let probe = probe_scope(&scope);
                Grant::new(&probe, &g.actions).map_err(|e| {
                    let at = match e {
                        crate::grants::GrantError::BadResourceId(_) => g.scope_location.clone(),
                        _ => g.actions_location.clone(),
                    };
                    err(at, format!("invalid grant: {e}"), None)
                })?;
                continue;
            }
            let grant = Grant::new(&scope, &g.actions).map_err(|e| {
                let at = match e {
                    crate::grants::GrantError::BadResourceId(_) => g.scope_location.clone(),
                    _ => g.actions_location.clone(),
                };
                err(at, format!("invalid grant: {e}"), None)
            })?;
            grants.push(grant);
        }
        let when = match s.when {
            Some((c, at)) => {
                let sub = |side: &str| -> Result<String, PipelineError> {
                    template::substitute(&toml::Value::String(side.to_string()), &lookup)
                        .map(|v| match v {
                            toml::Value::String(s) => s,
                            other => other.to_string(),
                        })
                        .map_err(|e| err(at.clone(), e, None))
                };
                let bound = Condition {
                    left: sub(&c.left)?,
                    op: match &c.op {
                        Some((eq, r)) => Some((*eq, sub(r)?)),
                        None => None,
                    },
                    source: c.source.clone(),
                };
                Some((bound, at))
            }
            None => None,
        };
        steps.push(StepSpec {
            id: s.id,
            uses: s.uses,
            uses_location: s.uses_location,
            with,
            grants: Grants::new(grants),
            limits: s.limits,
            retry: s.retry,
            when,
            location: s.location,
        });
    }
    Ok(Pipeline {
        name: pname,
        description,
        version,
        vars: vars.into_values().collect(),
        values,
        unknown,
        steps,
        sha256: sha256_hex(hasher_input.as_bytes()),
        files: tree.texts.iter().map(|(n, _)| PathBuf::from(n)).collect(),
    })
}
