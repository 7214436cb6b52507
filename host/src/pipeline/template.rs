//! `${vars.NAME}` and `${steps.ID.outputs.NAME}` inside pipeline strings, and the `when`
//! conditions built from them. Variables are substituted when a pipeline is bound to its inputs;
//! step outputs when the step is about to run.

use std::fmt;

/// What a `${…}` refers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ref {
    Var(String),
    Output { step: String, output: String },
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ref::Var(v) => write!(f, "${{vars.{v}}}"),
            Ref::Output { step, output } => write!(f, "${{steps.{step}.outputs.{output}}}"),
        }
    }
}

/// A piece of a template string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Ref(Ref),
}

fn parse_ref(inner: &str) -> Result<Ref, String> {
    let parts: Vec<&str> = inner.trim().split('.').collect();
    let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match parts[..] {
        ["vars", name] if ok(name) => Ok(Ref::Var(name.to_string())),
        ["steps", step, "outputs", output] if ok(step) && ok(output) => Ok(Ref::Output {
            step: step.to_string(),
            output: output.to_string(),
        }),
        _ => Err(format!(
            "`${{{inner}}}` is not a reference; write `${{vars.NAME}}` or `${{steps.ID.outputs.NAME}}`"
        )),
    }
}

/// Splits `s` into text and references. `$$` is a literal `$`.
pub fn parse(s: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        text.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            text.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| format!("unclosed `${{` in \"{s}\""))?;
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Ref(parse_ref(&body[..end])?));
            rest = &body[end + 1..];
        } else {
            text.push('$');
            rest = after;
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// Every reference inside `value` (strings, and strings inside arrays and tables).
pub fn refs(value: &toml::Value) -> Result<Vec<Ref>, String> {
    let mut out = Vec::new();
    visit(value, &mut |s| {
        for p in parse(s)? {
            if let Piece::Ref(r) = p {
                out.push(r);
            }
        }
        Ok(())
    })?;
    Ok(out)
}

fn visit(value: &toml::Value, f: &mut dyn FnMut(&str) -> Result<(), String>) -> Result<(), String> {
    match value {
        toml::Value::String(s) => f(s),
        toml::Value::Array(items) => items.iter().try_for_each(|v| visit(v, f)),
        toml::Value::Table(t) => t.values().try_for_each(|v| visit(v, f)),
        _ => Ok(()),
    }
}

/// A value as text inside a larger string.
fn as_text(v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(as_text)
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.join(",")),
        other => Err(format!("a {} cannot be placed inside text", other.type_str())),
    }
}

/// Replaces the references `lookup` knows; the others stay as written (so a later pass can fill
/// them). A string that is exactly one known reference takes that value's type.
pub fn substitute(value: &toml::Value, lookup: &dyn Fn(&Ref) -> Option<toml::Value>) -> Result<toml::Value, String> {
    match value {
        toml::Value::String(s) => {
            let pieces = parse(s)?;
            if let [Piece::Ref(r)] = &pieces[..] {
                if let Some(v) = lookup(r) {
                    return Ok(v);
                }
            }
            let mut out = String::new();
            for p in pieces {
                match p {
                    Piece::Text(t) => out.push_str(&t.replace('$', "$$")),
                    Piece::Ref(r) => match lookup(&r) {
                        Some(v) => out.push_str(&as_text(&v)?.replace('$', "$$")),
                        None => out.push_str(&r.to_string()),
                    },
                }
            }
            Ok(toml::Value::String(out))
        }
        toml::Value::Array(items) => items
            .iter()
            .map(|v| substitute(v, lookup))
            .collect::<Result<Vec<_>, _>>()
            .map(toml::Value::Array),
        toml::Value::Table(t) => {
            let mut out = toml::map::Map::new();
            for (k, v) in t {
                out.insert(k.clone(), substitute(v, lookup)?);
            }
            Ok(toml::Value::Table(out))
        }
        other => Ok(other.clone()),
    }
}

/// Undoes the `$$` escaping once every reference is resolved.
pub fn finish(value: toml::Value) -> toml::Value {
    match value {
        toml::Value::String(s) => toml::Value::String(s.replace("$$", "$")),
        toml::Value::Array(items) => toml::Value::Array(items.into_iter().map(finish).collect()),
        toml::Value::Table(t) => toml::Value::Table(t.into_iter().map(|(k, v)| (k, finish(v))).collect()),
        other => other,
    }
}

/// A `when` condition: `A`, `A == B` or `A != B`, each side a reference, a number, `true`/`false`,
/// or text (quoted or bare).
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub left: String,
    pub op: Option<(bool, String)>,
    pub source: String,
}

impl Condition {
    pub fn parse(source: &str) -> Result<Condition, String> {
        let (left, op) = if let Some((l, r)) = source.split_once("!=") {
            (l, Some((false, r)))
        } else if let Some((l, r)) = source.split_once("==") {
            (l, Some((true, r)))
        } else {
            (source, None)
        };
        let side = |s: &str| -> Result<String, String> {
            let s = s.trim();
            if s.is_empty() {
                return Err(format!("`{source}` has an empty side; write `A`, `A == B` or `A != B`"));
            }
            parse(s)?;
            Ok(s.to_string())
        };
        Ok(Condition {
            left: side(left)?,
            op: op.map(|(eq, r)| side(r).map(|r| (eq, r))).transpose()?,
            source: source.to_string(),
        })
    }

    /// References on either side.
    pub fn refs(&self) -> Result<Vec<Ref>, String> {
        let mut out = refs(&toml::Value::String(self.left.clone()))?;
        if let Some((_, r)) = &self.op {
            out.extend(refs(&toml::Value::String(r.clone()))?);
        }
        Ok(out)
    }

    /// Evaluates with every reference resolved by `lookup`.
    pub fn eval(&self, lookup: &dyn Fn(&Ref) -> Option<toml::Value>) -> Result<bool, String> {
        let side = |s: &str| -> Result<String, String> {
            let v = finish(substitute(&toml::Value::String(s.to_string()), lookup)?);
            let text = as_text(&v)?;
            if text.contains("${") {
                return Err(format!("`{s}` refers to something that has no value"));
            }
            Ok(text.trim_matches(|c| c == '"' || c == '\'').to_string())
        };
        let left = side(&self.left)?;
        match &self.op {
            None => Ok(!matches!(left.as_str(), "" | "false" | "0")),
            Some((eq, right)) => Ok((left == side(right)?) == *eq),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(r: &Ref) -> Option<toml::Value> {
        match r {
            Ref::Var(v) if v == "rg" => Some(toml::Value::String("rg1".into())),
            Ref::Var(v) if v == "n" => Some(toml::Value::Integer(3)),
            Ref::Var(v) if v == "rbac" => Some(toml::Value::Boolean(true)),
            _ => None,
        }
    }

    #[test]
    fn whole_references_keep_their_type_and_text_is_interpolated() {
        let s = |t: &str| substitute(&toml::Value::String(t.into()), &lookup).unwrap();
        assert_eq!(s("${vars.n}"), toml::Value::Integer(3));
        assert_eq!(s("/rg/${vars.rg}/x${vars.n}"), toml::Value::String("/rg/rg1/x3".into()));
        assert_eq!(
            s("${steps.a.outputs.key}"),
            toml::Value::String("${steps.a.outputs.key}".into()),
            "unknown references wait for a later pass"
        );
        assert_eq!(finish(s("cost: $$5")), toml::Value::String("cost: $5".into()));
        assert!(parse("${vars.x").unwrap_err().contains("unclosed"));
        assert!(parse("${env.HOME}").unwrap_err().contains("not a reference"));
    }

    #[test]
    fn conditions_compare_text() {
        let c = |t: &str| Condition::parse(t).unwrap().eval(&lookup).unwrap();
        assert!(c("${vars.rbac}"));
        assert!(c("${vars.rbac} == true"));
        assert!(c("${vars.rg} != 'rg2'"));
        assert!(!c("${vars.n} == 4"));
        assert!(Condition::parse("== 3").is_err());
        assert!(Condition::parse("${steps.a.outputs.x} == 1")
            .unwrap()
            .eval(&lookup)
            .is_err());
    }
}
