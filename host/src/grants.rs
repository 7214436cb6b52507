//! The grant model of design.md §5: a step is granted `(scope, actions)` pairs, and a capability
//! call is allowed only when some grant's scope covers the resource it names and lists its action.
//!
//! Scopes and the resources calls name are [`ResourceId`]s: parsed once, refused unless canonical
//! (no encodings, dot or empty segments, wildcards), and matched on whole segments ignoring case,
//! so that no spelling of a path can climb out of a scope.

pub use crate::resource_id::{ResourceId, ResourceIdError};
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
    #[error(transparent)]
    BadResourceId(#[from] ResourceIdError),
    #[error("a grant needs at least one action")]
    NoActions,
}

/// One grant: a scope and the actions allowed under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub scope: ResourceId,
    pub actions: BTreeSet<Action>,
}

impl Grant {
    /// Builds a grant from its pipeline spelling.
    pub fn new<S: AsRef<str>>(scope: &str, actions: &[S]) -> Result<Self, GrantError> {
        if actions.is_empty() {
            return Err(GrantError::NoActions);
        }
        Ok(Grant {
            scope: ResourceId::parse(scope)?,
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
    pub fn allows(&self, action: Action, resource: &ResourceId) -> bool {
        self.0
            .iter()
            .any(|g| g.actions.contains(&action) && resource.starts_with(&g.scope))
    }

    /// The first of `actions` that no grant allows on `resource` (`None`: all are allowed).
    pub fn missing(&self, actions: &[Action], resource: &ResourceId) -> Option<Action> {
        actions.iter().copied().find(|a| !self.allows(*a, resource))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RG: &str = "/subscriptions/0000/resourceGroups/rg1";

    fn grants(scope: &str, actions: &[&str]) -> Grants {
        Grants::new(vec![Grant::new(scope, actions).unwrap()])
    }

    fn path(s: &str) -> ResourceId {
        ResourceId::parse(s).unwrap()
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
    fn wildcard_and_encoded_scopes_are_refused() {
        for bad in [
            "/subscriptions/*",
            "/subscriptions/0000/resourceGroups/%2A",
            "/subscriptions/0000/",
        ] {
            assert!(
                matches!(Grant::new(bad, &["read"]), Err(GrantError::BadResourceId(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_action_must_be_granted() {
        let g = grants(RG, &["write"]);
        let cluster = path(&format!(
            "{RG}/providers/Microsoft.ContainerService/managedClusters/aks1"
        ));
        assert_eq!(g.missing(&[Action::Write], &cluster), None);
        assert_eq!(g.missing(&[Action::Write, Action::Kms], &cluster), Some(Action::Kms));
    }

    #[test]
    fn actions_parse_from_pipeline_spelling() {
        assert_eq!("secrets.rewrite".parse::<Action>(), Ok(Action::SecretsRewrite));
        assert!(matches!("delete".parse::<Action>(), Err(GrantError::UnknownAction(_))));
        assert_eq!(Grant::new::<&str>(RG, &[]), Err(GrantError::NoActions));
    }
}
