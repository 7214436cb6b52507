//! Checking a step's `with` table against the schema its plugin declares in `describe`, and
//! turning it into WIT parameters (defaults applied).

use super::{PipelineError, StepSpec};
use crate::plugin::type_name;
use crate::wit::types::{Param, PluginInfo, Value, ValueType};

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

/// The WIT parameters for `step`, or the first mismatch with `info.params`, located.
pub fn resolve_params(step: &StepSpec, info: &PluginInfo) -> Result<Vec<Param>, PipelineError> {
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
        let value = convert(&entry.value, spec.type_).ok_or_else(|| PipelineError {
            location: entry.location.clone(),
            message: format!("parameter `{}` must be a {}", entry.name, type_name(spec.type_)),
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
