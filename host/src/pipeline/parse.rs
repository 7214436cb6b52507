//! TOML text → [`Pipeline`], strictly: unknown keys, bad grants, bad durations and sizes, and
//! duplicate step ids are errors with a location.

use super::{Location, ParamEntry, Pipeline, PipelineError, PluginRef, StepSpec};
use crate::grants::{Grant, Grants};
use crate::limits::StepLimits;
use crate::plugin::sha256_hex;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    pipeline: Option<RawHeader>,
    #[serde(default)]
    steps: Vec<Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    #[allow(dead_code)]
    version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    id: Spanned<String>,
    uses: Spanned<String>,
    sha256: Option<Spanned<String>>,
    #[serde(default)]
    with: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default)]
    grants: Vec<RawGrant>,
    timeout: Option<Spanned<String>>,
    limits: Option<RawLimits>,
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

/// Turns byte offsets into line/column locations in one file.
struct Locator<'a> {
    text: &'a str,
    file: &'a str,
}

impl Locator<'_> {
    fn at(&self, offset: usize) -> Location {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Location {
            file: self.file.to_string(),
            line,
            column,
        }
    }

    fn error(&self, span: Range<usize>, message: impl Into<String>, hint: Option<&str>) -> PipelineError {
        PipelineError {
            location: self.at(span.start),
            message: message.into(),
            hint: hint.map(str::to_string),
        }
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Parses pipeline `text` read from `file`; relative plugin paths resolve against `base`.
pub fn parse(text: &str, file: &str, base: &Path) -> Result<Pipeline, PipelineError> {
    let loc = Locator { text, file };
    let raw: RawPipeline = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        loc.error(span, e.message().to_string(), None)
    })?;
    let header = raw.pipeline.ok_or_else(|| {
        loc.error(
            0..0,
            "missing [pipeline] table",
            Some("start the file with [pipeline] and name = \"...\""),
        )
    })?;
    if raw.steps.is_empty() {
        return Err(loc.error(
            0..0,
            "the pipeline has no [[steps]]",
            Some("add a [[steps]] table with id and uses"),
        ));
    }

    let mut seen = BTreeSet::new();
    let mut steps = Vec::new();
    for spanned in raw.steps {
        let step_span = spanned.span();
        let step = spanned.into_inner();
        let id = step.id.get_ref();
        if !is_identifier(id) {
            return Err(loc.error(
                step.id.span(),
                format!("step id `{id}` is not valid"),
                Some("use lowercase letters, digits, `-` and `_`"),
            ));
        }
        if !seen.insert(id.clone()) {
            return Err(loc.error(
                step.id.span(),
                format!("step id `{id}` is used twice"),
                Some("step ids must be unique"),
            ));
        }
        let uses = plugin_ref(&loc, &step, base)?;
        let mut with = Vec::new();
        for (name, value) in &step.with {
            with.push(ParamEntry {
                name: name.get_ref().clone(),
                value: value.get_ref().clone(),
                location: loc.at(name.span().start),
            });
        }
        let mut grants = Vec::new();
        for g in &step.grants {
            let grant = Grant::new(g.scope.get_ref(), g.actions.get_ref()).map_err(|e| {
                let span = match e {
                    crate::grants::GrantError::BadResourceId(_) => g.scope.span(),
                    _ => g.actions.span(),
                };
                loc.error(span, format!("invalid grant: {e}"), None)
            })?;
            grants.push(grant);
        }
        let limits = limits(&loc, &step)?;
        steps.push(StepSpec {
            id: id.clone(),
            uses_location: loc.at(step.uses.span().start),
            uses,
            with,
            grants: Grants::new(grants),
            limits,
            location: loc.at(step_span.start),
        });
    }
    Ok(Pipeline {
        name: header.name,
        description: header.description,
        steps,
        sha256: sha256_hex(text.as_bytes()),
    })
}

fn plugin_ref(loc: &Locator<'_>, step: &RawStep, base: &Path) -> Result<PluginRef, PipelineError> {
    let uses = step.uses.get_ref();
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
            step.uses.span(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, "p.toml", Path::new("")).unwrap_err().to_string()
    }

    #[test]
    fn parses_a_minimal_step() {
        let p = parse(
            "[pipeline]\nname = \"x\"\n[[steps]]\nid = \"a\"\nuses = \"validate-key-id\"\ntimeout = \"2s\"\nlimits = { memory = \"64MiB\" }\n[steps.with]\nkey_id = \"k\"\n",
            "p.toml",
            Path::new(""),
        )
        .unwrap();
        assert_eq!(p.steps[0].uses, PluginRef::Builtin("validate-key-id".into()));
        assert_eq!(p.steps[0].limits.timeout, std::time::Duration::from_secs(2));
        assert_eq!(p.steps[0].limits.memory_bytes, 64 << 20);
        assert_eq!(p.steps[0].with[0].location.line, 9);
    }

    #[test]
    fn errors_point_at_the_line() {
        assert!(
            err("[pipeline]\nname = \"x\"\n[[steps]]\nid = \"a\"\nuses = \"p\"\ncolour = 1\n")
                .starts_with("p.toml:6:1: unknown field `colour`")
        );
        assert!(
            err("[pipeline]\nname = \"x\"\n[[steps]]\nid = \"a\"\nuses = \"p\"\ntimeout = \"soon\"\n")
                .starts_with("p.toml:6:11: invalid timeout")
        );
        assert!(
            err("[pipeline]\nname = \"x\"\n[[steps]]\nid = \"a\"\nuses = \"./x.wasm\"\n").contains("hint: add sha256")
        );
        assert!(err("[pipeline]\nname = \"x\"\n[[steps]]\nid = \"a\"\nuses = \"p\"\n[[steps.grants]]\nscope = \"/subscriptions/s/../t\"\nactions = [\"read\"]\n").starts_with("p.toml:7:9: invalid grant"));
        assert!(err("[pipeline]\nname = \"x\"\n[[steps]]\nid = \"a\"\nuses = \"p\"\n[[steps.grants]]\nscope = \"/subscriptions/s\"\nactions = [\"delete\"]\n").contains("unknown action `delete`"));
        assert!(err(
            "[pipeline]\nname = \"x\"\n[[steps]]\nid = \"a\"\nuses = \"p\"\n[[steps]]\nid = \"a\"\nuses = \"p\"\n"
        )
        .starts_with("p.toml:7:6: step id `a` is used twice"));
        assert!(err("[pipeline\n").starts_with("p.toml:1:"));
    }
}
