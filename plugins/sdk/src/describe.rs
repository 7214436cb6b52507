//! A builder for [`PluginInfo`], so `describe` reads like a declaration.

use crate::{Action, GrantRequest, ParamSpec, PluginInfo, TextFormat, Value, ValueType};

/// Starts describing a plugin.
pub fn info(name: &str, version: &str, description: &str) -> InfoBuilder {
    InfoBuilder(PluginInfo {
        name: name.to_string(),
        version: version.to_string(),
        description: description.to_string(),
        params: Vec::new(),
        outputs: Vec::new(),
        grants: Vec::new(),
    })
}

/// Accumulates parameters, outputs and grants; see [`info`].
pub struct InfoBuilder(PluginInfo);

impl InfoBuilder {
    /// Declares a parameter.
    pub fn param(mut self, spec: ParamSpec) -> Self {
        self.0.params.push(spec);
        self
    }

    /// Declares an output.
    pub fn output(mut self, spec: ParamSpec) -> Self {
        self.0.outputs.push(spec);
        self
    }

    /// Declares a grant the plugin needs.
    pub fn grant(mut self, action: Action, description: &str) -> Self {
        self.0.grants.push(GrantRequest {
            action,
            description: description.to_string(),
        });
        self
    }

    /// The finished description.
    pub fn build(self) -> PluginInfo {
        self.0
    }
}

impl ParamSpec {
    fn new(name: &str, ty: ValueType, description: &str) -> Self {
        ParamSpec {
            name: name.to_string(),
            type_: ty,
            required: false,
            default: None,
            description: description.to_string(),
            format: None,
        }
    }

    /// An optional text parameter.
    pub fn text(name: &str, description: &str) -> Self {
        Self::new(name, ValueType::Text, description)
    }

    /// An optional integer parameter.
    pub fn integer(name: &str, description: &str) -> Self {
        Self::new(name, ValueType::Integer, description)
    }

    /// An optional boolean parameter.
    pub fn flag(name: &str, description: &str) -> Self {
        Self::new(name, ValueType::Flag, description)
    }

    /// An optional list-of-text parameter.
    pub fn text_list(name: &str, description: &str) -> Self {
        Self::new(name, ValueType::TextList, description)
    }

    /// Declares what a text parameter must be; the host checks literal values before running.
    pub fn format(mut self, format: TextFormat) -> Self {
        self.format = Some(format);
        self
    }

    /// Makes the parameter required.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Sets a text default.
    pub fn default_text(mut self, value: &str) -> Self {
        self.default = Some(Value::Text(value.to_string()));
        self
    }

    /// Sets an integer default.
    pub fn default_integer(mut self, value: i64) -> Self {
        self.default = Some(Value::Integer(value));
        self
    }

    /// Sets a boolean default.
    pub fn default_flag(mut self, value: bool) -> Self {
        self.default = Some(Value::Flag(value));
        self
    }
}
