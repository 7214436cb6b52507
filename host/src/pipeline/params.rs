//! Checking a step's `with` table against the schema its plugin declares in `describe`, and
//! turning it into WIT parameters (defaults applied, step outputs substituted).

use super::template::{self, Ref};
use super::{PipelineError, StepSpec};
use crate::plugin::type_name;
use crate::wit::types::{Param, ParamSpec, PluginInfo, Value, ValueType};
use std::collections::HashMap;

fn convert(value: &toml::Value, ty: ValueType) -> Option<Value> {
    match (ty, value) {
        (ValueType::Text, toml::Value::String(s)) => Some(Value::Text(s.clone())),
        (ValueType::Integer, toml::Value::Integer(i)) => Some(Value::Integer(*i)),
        (ValueType::Flag, toml::Value::Boolean(b)) => Some(Value::Flag(*b)),
        (ValueType::TextList, toml::Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(Value::TextList),
        _ => None,
    }
}

/// `an integer`, `a string`.
fn with_article(noun: &str) -> String {
    let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {noun}")
}

/// A WIT value as TOML, for substitution into later steps.
pub fn to_toml(value: &Value) -> toml::Value {
    match value {
        Value::Text(s) => toml::Value::String(s.clone()),
        Value::Integer(i) => toml::Value::Integer(*i),
        Value::Flag(b) => toml::Value::Boolean(*b),
        Value::TextList(items) => toml::Value::Array(items.iter().cloned().map(toml::Value::String).collect()),
    }
}

/// A stand-in of type `ty`, to type-check a parameter fed by a step output before it exists.
fn placeholder(ty: ValueType) -> toml::Value {
    match ty {
        ValueType::Text => toml::Value::String("placeholder".into()),
        ValueType::Integer => toml::Value::Integer(0),
        ValueType::Flag => toml::Value::Boolean(false),
        ValueType::TextList => toml::Value::Array(Vec::new()),
    }
}

/// The WIT parameters for `step` with step outputs taken from `lookup`, or the first mismatch
/// with `info.params`, located.
pub fn resolve_params(
    step: &StepSpec,
    info: &PluginInfo,
    lookup: &dyn Fn(&Ref) -> Option<toml::Value>,
) -> Result<Vec<Param>, PipelineError> {
    let mut params = Vec::new();
    for entry in &step.with {
        let Some(spec) = info.params.iter().find(|p| p.name == entry.name) else {
            let known: Vec<&str> = info.params.iter().map(|p| p.name.as_str()).collect();
            return Err(PipelineError {
                location: entry.location.clone(),
                message: format!("plugin `{}` has no parameter `{}`", info.name, entry.name),
                hint: Some(if known.is_empty() {
                    "it takes no parameters".to_string()
                } else {
                    format!("its parameters are: {}", known.join(", "))
                }),
            });
        };
        let located = |message: String| PipelineError {
            location: entry.location.clone(),
            message,
            hint: None,
        };
        let substituted = template::finish(template::substitute(&entry.value, lookup).map_err(located)?);
        if let Some(r) = template::refs(&substituted).ok().and_then(|r| r.into_iter().next()) {
            return Err(located(format!("{r} has no value")));
        }
        // A literal (written in the pipeline, a default, `--set`) must be what the parameter
        // declares; values from earlier steps are the plugins' own.
        let literal = template::refs(&entry.value).unwrap_or_default().is_empty();
        if let (true, Some(format), toml::Value::String(text)) = (literal, spec.format, &substituted) {
            crate::names::text_format(format, text).map_err(|e| PipelineError {
                location: entry.location.clone(),
                message: match &entry.from {
                    Some(from) => format!("parameter `{}` (value of {from}): {e}", entry.name),
                    None => format!("parameter `{}`: {e}", entry.name),
                },
                hint: Some(spec.description.clone()),
            })?;
        }
        let value = convert(&substituted, spec.type_).ok_or_else(|| PipelineError {
            location: entry.location.clone(),
            message: format!(
                "parameter `{}` must be {}",
                entry.name,
                with_article(type_name(spec.type_))
            ),
            hint: Some(spec.description.clone()),
        })?;
        params.push(Param {
            name: entry.name.clone(),
            value,
        });
    }
    for spec in &info.params {
        if params.iter().any(|p| p.name == spec.name) {
            continue;
        }
        match (&spec.default, spec.required) {
            (Some(default), _) => params.push(Param {
                name: spec.name.clone(),
                value: default.clone(),
            }),
            (None, true) => {
                return Err(PipelineError {
                    location: step.location.clone(),
                    message: format!(
                        "step `{}` is missing required parameter `{}` of plugin `{}`",
                        step.id, spec.name, info.name
                    ),
                    hint: Some(format!("add it under [steps.with]: {}", spec.description)),
                })
            }
            (None, false) => {}
        }
    }
    Ok(params)
}

/// Checks `step` against its plugin's schema before anything runs: step-output references must
/// name outputs the earlier step's plugin declares, of the parameter's type.
pub fn check_params(
    step: &StepSpec,
    info: &PluginInfo,
    earlier: &HashMap<String, Vec<ParamSpec>>,
    unknown: &std::collections::BTreeMap<String, crate::wit::types::ValueType>,
) -> Result<(), PipelineError> {
    for entry in &step.with {
        for r in template::refs(&entry.value).unwrap_or_default() {
            if let Ref::Output { step: s, output } = &r {
                let declared = earlier.get(s).map(Vec::as_slice).unwrap_or_default();
                if !declared.iter().any(|o| o.name == *output) {
                    let names: Vec<&str> = declared.iter().map(|o| o.name.as_str()).collect();
                    return Err(PipelineError {
                        location: entry.location.clone(),
                        message: format!("{r}: step `{s}` has no output `{output}`"),
                        hint: Some(if names.is_empty() {
                            format!("step `{s}`'s plugin declares no outputs")
                        } else {
                            format!("its outputs are: {}", names.join(", "))
                        }),
                    });
                }
            }
        }
    }
    let lookup = |r: &Ref| match r {
        Ref::Output { step, output } => earlier
            .get(step)
            .and_then(|outs| outs.iter().find(|o| o.name == *output))
            .map(|o| placeholder(o.type_)),
        // A variable `validate` was given no value for: checked by its type only.
        Ref::Var(v) => unknown.get(v).map(|ty| placeholder(*ty)),
    };
    resolve_params(step, info, &lookup).map(drop)
}
