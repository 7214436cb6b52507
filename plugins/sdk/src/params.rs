//! Typed access to a step's parameters, and building its outputs.

use crate::{Error, Param, Value};

/// The parameters `run` received (defaults already applied by the host).
pub struct Params(Vec<Param>);

impl From<Vec<Param>> for Params {
    fn from(params: Vec<Param>) -> Self {
        Params(params)
    }
}

impl Params {
    /// The raw value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|p| p.name == name).map(|p| &p.value)
    }

    fn missing(name: &str) -> Error {
        Error::invalid(format!("parameter `{name}` is required"))
    }

    fn mistyped(name: &str, want: &str) -> Error {
        Error::invalid(format!("parameter `{name}` must be {want}"))
    }

    /// A required text parameter.
    pub fn text(&self, name: &str) -> Result<String, Error> {
        self.opt_text(name)?.ok_or_else(|| Self::missing(name))
    }

    /// An optional text parameter (an empty string counts as absent).
    pub fn opt_text(&self, name: &str) -> Result<Option<String>, Error> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Text(s)) if s.is_empty() => Ok(None),
            Some(Value::Text(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Self::mistyped(name, "text")),
        }
    }

    /// A required integer parameter.
    pub fn integer(&self, name: &str) -> Result<i64, Error> {
        match self.get(name) {
            None => Err(Self::missing(name)),
            Some(Value::Integer(i)) => Ok(*i),
            Some(_) => Err(Self::mistyped(name, "an integer")),
        }
    }

    /// A boolean parameter; absent means `false`.
    pub fn flag(&self, name: &str) -> Result<bool, Error> {
        match self.get(name) {
            None => Ok(false),
            Some(Value::Flag(b)) => Ok(*b),
            Some(_) => Err(Self::mistyped(name, "true or false")),
        }
    }

    /// A list-of-text parameter; absent means empty.
    pub fn text_list(&self, name: &str) -> Result<Vec<String>, Error> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::TextList(l)) => Ok(l.clone()),
            Some(_) => Err(Self::mistyped(name, "a list of strings")),
        }
    }
}

/// The outputs a step returns; later steps read them as `${steps.ID.outputs.NAME}`.
#[derive(Default)]
pub struct Outputs(Vec<Param>);

impl Outputs {
    /// No outputs yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn with(mut self, name: &str, value: Value) -> Self {
        self.0.push(Param {
            name: name.to_string(),
            value,
        });
        self
    }

    /// Adds a text output.
    pub fn text(self, name: &str, value: impl Into<String>) -> Self {
        self.with(name, Value::Text(value.into()))
    }

    /// Adds an integer output.
    pub fn integer(self, name: &str, value: i64) -> Self {
        self.with(name, Value::Integer(value))
    }

    /// Adds a boolean output.
    pub fn flag(self, name: &str, value: bool) -> Self {
        self.with(name, Value::Flag(value))
    }

    /// The WIT representation.
    pub fn into_params(self) -> Vec<Param> {
        self.0
    }
}
