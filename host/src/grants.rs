//! The grant model of design.md §5: a step is granted `(scope, actions)` pairs, and a capability
//! call is allowed only when some grant's scope covers the resource it names and lists its action.
//!
//! Matching is on whole path segments and case-insensitive (ARM ids are), and resource ids with
//! `.`/`..`/empty segments or query characters are refused outright so that no spelling of a path
//! can climb out of a scope.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// What a grant allows; mirrors the WIT `action` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Read,
    Write,
    Keys,
    Roles,
    Kms,
    Upgrade,
    SecretsRewrite,
}

impl Action {
    /// Every action, in declaration order.
    pub const ALL: [Action; 7] = [
        Action::Read,
        Action::Write,
        Action::Keys,
        Action::Roles,
        Action::Kms,
        Action::Upgrade,
        Action::SecretsRewrite,
    ];

    /// The spelling used in pipelines (`secrets.rewrite`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Keys => "keys",
            Action::Roles => "roles",
            Action::Kms => "kms",
            Action::Upgrade => "upgrade",
            Action::SecretsRewrite => "secrets.rewrite",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = GrantError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| GrantError::UnknownAction(s.to_string()))
    }
}

/// Why a grant or a resource id was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("unknown action `{0}`; expected one of read, write, keys, roles, kms, upgrade, secrets.rewrite")]
    UnknownAction(String),
    #[error("`{0}` is not an ARM resource id: it must start with /subscriptions/ and have no empty, `.` or `..` segments, `?` or `#`")]
    BadResourceId(String),
    #[error("a grant needs at least one action")]
    NoActions,
}

/// A normalised ARM resource id (lowercase segments, no trailing slash), used both as a grant's
/// scope and as the resource a call names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourcePath(Vec<String>);

impl ResourcePath {
    /// Parses and normalises `id`.
    pub fn parse(id: &str) -> Result<Self, GrantError> {
        let bad = || GrantError::BadResourceId(id.to_string());
        let rest = id.strip_prefix('/').ok_or_else(bad)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['?', '#', '\\']) || rest.chars().any(char::is_control) {
            return Err(bad());
        }
        let segments: Vec<String> = rest.split('/').map(str::to_ascii_lowercase).collect();
        if segments.first().map(String::as_str) != Some("subscriptions")
            || segments.len() < 2
            || segments.iter().any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(bad());
        }
        Ok(ResourcePath(segments))
    }

    /// Whether `self`, as a scope, contains `other` (equal, or an ancestor on segment boundaries).
    pub fn covers(&self, other: &ResourcePath) -> bool {
        other.0.len() >= self.0.len() && other.0[..self.0.len()] == self.0[..]
    }
}

impl fmt::Display for ResourcePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.0 {
            write!(f, "/{s}")?;
        }
        Ok(())
    }
}

/// One grant: a scope and the actions allowed under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub scope: ResourcePath,
    pub actions: BTreeSet<Action>,
}

impl Grant {
    /// Builds a grant from its pipeline spelling.
    pub fn new<S: AsRef<str>>(scope: &str, actions: &[S]) -> Result<Self, GrantError> {
        if actions.is_empty() {
            return Err(GrantError::NoActions);
        }
        Ok(Grant {
            scope: ResourcePath::parse(scope)?,
            actions: actions.iter().map(|a| a.as_ref().parse()).collect::<Result<_, _>>()?,
        })
    }
}

/// The grants of one step. Empty means the step may call only `log` and `checkpoint`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants(Vec<Grant>);

impl Grants {
    pub fn new(grants: Vec<Grant>) -> Self {
        Grants(grants)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Grant> {
        self.0.iter()
    }

    /// Whether some grant allows `action` on `resource`.
    pub fn allows(&self, action: Action, resource: &ResourcePath) -> bool {
        self.0
            .iter()
            .any(|g| g.actions.contains(&action) && g.scope.covers(resource))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RG: &str = "/subscriptions/0000/resourceGroups/rg1";

    fn grants(scope: &str, actions: &[&str]) -> Grants {
        Grants::new(vec![Grant::new(scope, actions).unwrap()])
    }

    fn path(s: &str) -> ResourcePath {
        ResourcePath::parse(s).unwrap()
    }

    #[test]
    fn scope_covers_descendants_case_insensitively() {
        let g = grants(RG, &["read"]);
        assert!(g.allows(Action::Read, &path(RG)));
        assert!(g.allows(
            Action::Read,
            &path("/SUBSCRIPTIONS/0000/resourcegroups/RG1/providers/Microsoft.KeyVault/vaults/kv1")
        ));
        assert!(!g.allows(Action::Write, &path(RG)));
    }

    #[test]
    fn scope_matches_whole_segments_only() {
        let g = grants(RG, &["read"]);
        assert!(!g.allows(Action::Read, &path("/subscriptions/0000/resourceGroups/rg10")));
        assert!(!g.allows(Action::Read, &path("/subscriptions/0000")));
    }

    #[test]
    fn traversal_and_junk_are_not_resource_ids() {
        for bad in [
            "/subscriptions/0000/resourceGroups/rg1/../rg2",
            "/subscriptions/0000//rg1",
            "subscriptions/0000",
            "/tenants/x",
            "/subscriptions/0000/resourceGroups/rg1?x=1",
            "/subscriptions",
        ] {
            assert!(ResourcePath::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn actions_parse_from_pipeline_spelling() {
        assert_eq!("secrets.rewrite".parse::<Action>(), Ok(Action::SecretsRewrite));
        assert!(matches!("delete".parse::<Action>(), Err(GrantError::UnknownAction(_))));
        assert_eq!(Grant::new::<&str>(RG, &[]), Err(GrantError::NoActions));
    }
}
