//! The directory: who a principal is (itself and the groups it belongs to), which role
//! definitions exist (the built-ins of Azure plus custom ones an admin call adds), and whether a
//! principal may perform an action on a resource through its role assignments.
//!
//! This is the one seam every authorisation decision that depends on Azure RBAC goes through:
//! the Key Vault data plane (`keyvault.rs`, for vaults with `enableRbacAuthorization`) and the
//! AKS KMS checks (`arm/clusters.rs`). Eventual consistency lives here too: a role assignment
//! only takes effect `rbac_propagation` after its `createdOn`, and a deleted one keeps its effect
//! for as long after its deletion, as on Azure ("If role assignments, deny assignments or role
//! definitions were changed recently, please observe propagation time", Key Vault's
//! `ForbiddenByRbac` message; azure-reference.md §4 on replication delays).
//!
//! Evaluation follows Azure's rules (MicrosoftDocs/azure-docs
//! `articles/role-based-access-control/role-definitions.md`): within one role definition, an
//! action is allowed when it matches one of `actions` (`dataActions` for data-plane operations)
//! and none of `notActions` (`notDataActions`); `*` in a pattern matches any run of characters and
//! matching is case-insensitive; access is the union over every assignment whose scope contains
//! the resource and whose principal is the caller or one of its groups (`Not*` entries subtract
//! only within their own role, they are not deny assignments).

use crate::http::{now_ms, ArmError};
use crate::state::AppState;
use serde::{Deserialize, Serialize};
use serde_json::{json as j, Value};
use std::collections::BTreeSet;

/// The ARM type of role assignments, as stored.
pub const ASSIGNMENT_TYPE: &str = "Microsoft.Authorization/roleAssignments";
/// The stored type of deleted role assignments, kept so their effect can outlive them by the
/// propagation delay. Never served.
pub const DELETED_ASSIGNMENT_TYPE: &str = "kmsflow.localcloud/deletedRoleAssignments";

/// One `permissions` entry of a role definition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Permission {
    pub actions: Vec<String>,
    pub not_actions: Vec<String>,
    pub data_actions: Vec<String>,
    pub not_data_actions: Vec<String>,
}

impl Permission {
    /// Whether this entry allows `action`: a match in the allow list and none in the `Not*` list.
    fn allows(&self, action: &str, data: bool) -> bool {
        let (allow, deny) = if data {
            (&self.data_actions, &self.not_data_actions)
        } else {
            (&self.actions, &self.not_actions)
        };
        allow.iter().any(|p| wildcard_match(p, action)) && !deny.iter().any(|p| wildcard_match(p, action))
    }
}

/// A role definition: its GUID (the `name` ARM serves), name, kind and permissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleDefinition {
    /// The definition's GUID, lowercase.
    pub name: String,
    pub role_name: String,
    #[serde(default)]
    pub description: String,
    /// `BuiltInRole` or `CustomRole`.
    #[serde(rename = "type")]
    pub role_type: String,
    pub permissions: Vec<Permission>,
    #[serde(default = "root_scope")]
    pub assignable_scopes: Vec<String>,
}

fn root_scope() -> Vec<String> {
    vec!["/".into()]
}

impl RoleDefinition {
    /// Whether the role allows `action` (a data action when `data`).
    pub fn allows(&self, action: &str, data: bool) -> bool {
        self.permissions.iter().any(|p| p.allows(action, data))
    }

    /// The document `GET …/roleDefinitions/{guid}` answers, with the id in subscription `sub`
    /// (shape of `Microsoft.Authorization/stable/2022-04-01/examples/GetRoleDefinitionById.json`).
    pub fn to_arm(&self, sub: &str) -> Value {
        j!({
            "id": crate::arm::roles::role_definition_id(sub, &self.name),
            "type": "Microsoft.Authorization/roleDefinitions",
            "name": self.name,
            "properties": {
                "roleName": self.role_name, "type": self.role_type, "description": self.description,
                "assignableScopes": self.assignable_scopes, "permissions": self.permissions,
            },
        })
    }
}

/// Whether `pattern` (with `*` matching any run of characters) matches `action`, ignoring case.
pub fn wildcard_match(pattern: &str, action: &str) -> bool {
    let p = pattern.to_ascii_lowercase().into_bytes();
    let a = action.to_ascii_lowercase().into_bytes();
    // Greedy matching with backtracking to the last `*` (linear in practice).
    let (mut pi, mut ai) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ai < a.len() {
        if pi < p.len() && p[pi] != b'*' && p[pi] == a[ai] {
            pi += 1;
            ai += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ai));
            pi += 1;
        } else if let Some((sp, sa)) = star {
            pi = sp + 1;
            ai = sa + 1;
            star = Some((sp, sa + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// `(guid, roleName, description, actions, notActions, dataActions)` of the built-in roles this
/// cloud serves. Copied from MicrosoftDocs/azure-docs
/// `articles/role-based-access-control/built-in-roles/security.md` (Key Vault roles) and
/// `…/built-in-roles/privileged.md` + `general.md` (Owner, Contributor, Reader); none of them has
/// `notDataActions`. GUIDs as in azure-reference.md §4.
type Builtin = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
);

/// The management-plane actions Key Vault's data roles carry besides their data actions.
const KV_READ_ACTIONS: &[&str] = &[
    "Microsoft.Authorization/*/read",
    "Microsoft.Insights/alertRules/*",
    "Microsoft.Resources/deployments/*",
    "Microsoft.Resources/subscriptions/resourceGroups/read",
    "Microsoft.Support/*",
    "Microsoft.KeyVault/checkNameAvailability/read",
    "Microsoft.KeyVault/deletedVaults/read",
    "Microsoft.KeyVault/locations/*/read",
    "Microsoft.KeyVault/vaults/*/read",
    "Microsoft.KeyVault/operations/read",
];

const BUILTINS: &[Builtin] = &[
    (
        "00482a5a-887f-4fb3-b363-3b7fe8e74483",
        "Key Vault Administrator",
        "Perform all data plane operations on a key vault and all objects in it, including certificates, keys, and secrets. Cannot manage key vault resources or manage role assignments. Only works for key vaults that use the 'Azure role-based access control' permission model.",
        KV_READ_ACTIONS,
        &[],
        &["Microsoft.KeyVault/vaults/*"],
    ),
    (
        "14b46e9e-c2b7-41b4-b07b-48a6ebf60603",
        "Key Vault Crypto Officer",
        "Perform any action on the keys of a key vault, except manage permissions. Only works for key vaults that use the 'Azure role-based access control' permission model.",
        KV_READ_ACTIONS,
        &[],
        &[
            "Microsoft.KeyVault/vaults/keys/*",
            "Microsoft.KeyVault/vaults/keyrotationpolicies/*",
        ],
    ),
    (
        "12338af0-0e69-4776-bea7-57ae8d297424",
        "Key Vault Crypto User",
        "Perform cryptographic operations using keys. Only works for key vaults that use the 'Azure role-based access control' permission model.",
        &[],
        &[],
        &[
            "Microsoft.KeyVault/vaults/keys/read",
            "Microsoft.KeyVault/vaults/keys/update/action",
            "Microsoft.KeyVault/vaults/keys/backup/action",
            "Microsoft.KeyVault/vaults/keys/encrypt/action",
            "Microsoft.KeyVault/vaults/keys/decrypt/action",
            "Microsoft.KeyVault/vaults/keys/wrap/action",
            "Microsoft.KeyVault/vaults/keys/unwrap/action",
            "Microsoft.KeyVault/vaults/keys/sign/action",
            "Microsoft.KeyVault/vaults/keys/verify/action",
        ],
    ),
    (
        "e147488a-f6f5-4113-8e2d-b22465e65bf6",
        "Key Vault Crypto Service Encryption User",
        "Read metadata of keys and perform wrap/unwrap operations. Only works for key vaults that use the 'Azure role-based access control' permission model.",
        &[
            "Microsoft.EventGrid/eventSubscriptions/write",
            "Microsoft.EventGrid/eventSubscriptions/read",
            "Microsoft.EventGrid/eventSubscriptions/delete",
        ],
        &[],
        &[
            "Microsoft.KeyVault/vaults/keys/read",
            "Microsoft.KeyVault/vaults/keys/wrap/action",
            "Microsoft.KeyVault/vaults/keys/unwrap/action",
        ],
    ),
    (
        "21090545-7ca7-4776-b22c-e363652d74d2",
        "Key Vault Reader",
        "Read metadata of key vaults and its certificates, keys, and secrets. Cannot read sensitive values such as secret contents or key material. Only works for key vaults that use the 'Azure role-based access control' permission model.",
        KV_READ_ACTIONS,
        &[],
        &[
            "Microsoft.KeyVault/vaults/*/read",
            "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
        ],
    ),
    (
        "f25e0fa2-a7c8-4377-a976-54943a77a395",
        "Key Vault Contributor",
        "Lets you manage key vaults, but not access to them.",
        &[
            "Microsoft.Authorization/*/read",
            "Microsoft.Insights/alertRules/*",
            "Microsoft.KeyVault/*",
            "Microsoft.Resources/deployments/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.Support/*",
        ],
        &[
            "Microsoft.KeyVault/locations/deletedVaults/purge/action",
            "Microsoft.KeyVault/hsmPools/*",
            "Microsoft.KeyVault/managedHsms/*",
        ],
        &[],
    ),
    (
        "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        "Owner",
        "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.",
        &["*"],
        &[],
        &[],
    ),
    (
        "b24988ac-6180-42a0-ab88-20f7382dd24c",
        "Contributor",
        "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC, manage assignments in Azure Blueprints, or share image galleries.",
        &["*"],
        &[
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action",
            "Microsoft.Blueprint/blueprintAssignments/write",
            "Microsoft.Blueprint/blueprintAssignments/delete",
            "Microsoft.Compute/galleries/share/action",
            "Microsoft.Purview/consents/write",
            "Microsoft.Purview/consents/delete",
            "Microsoft.Resources/deploymentStacks/manageDenySetting/action",
            "Microsoft.Subscription/cancel/action",
            "Microsoft.Subscription/enable/action",
        ],
        &[],
    ),
    (
        "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        "Reader",
        "View all resources, but does not allow you to make any changes.",
        &["*/read"],
        &[],
        &[],
    ),
];

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Every built-in role definition this cloud serves, in a fixed order.
pub fn builtin_roles() -> Vec<RoleDefinition> {
    BUILTINS
        .iter()
        .map(
            |(guid, name, description, actions, not_actions, data_actions)| RoleDefinition {
                name: guid.to_string(),
                role_name: name.to_string(),
                description: description.to_string(),
                role_type: "BuiltInRole".into(),
                permissions: vec![Permission {
                    actions: strings(actions),
                    not_actions: strings(not_actions),
                    data_actions: strings(data_actions),
                    not_data_actions: Vec::new(),
                }],
                assignable_scopes: root_scope(),
            },
        )
        .collect()
}

/// The GUID at the end of a role definition id (`/subscriptions/{s}/providers/…/{guid}`,
/// `/providers/…/{guid}`, or the bare GUID), lowercased.
pub fn definition_guid(definition_id: &str) -> String {
    definition_id
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Whether scope `outer` contains resource id `inner` (segment-wise, case-insensitive).
pub fn scope_covers(outer: &str, inner: &str) -> bool {
    let o: Vec<String> = outer
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let i: Vec<String> = inner
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    i.len() >= o.len() && i[..o.len()] == o[..]
}

fn subscription_of(id: &str) -> String {
    id.split('/')
        .filter(|s| !s.is_empty())
        .nth(1)
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// The outcome of an RBAC check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// An effective assignment grants the action.
    Allowed,
    /// Only an assignment that has not propagated yet would grant it; it will at `effective_at_ms`
    /// (milliseconds since the Unix epoch, the clock of [`crate::http::now_ms`]). Callers answer
    /// exactly as for [`Decision::Denied`]: Azure cannot tell the two apart either.
    NotYetPropagated { effective_at_ms: i64 },
    /// Nothing grants it.
    Denied,
}

impl Decision {
    /// Whether the action may proceed now (only [`Decision::Allowed`]).
    pub fn allowed(self) -> bool {
        self == Decision::Allowed
    }
}

/// The milliseconds-since-epoch of an RFC 3339 timestamp, as ARM writes `createdOn`.
fn rfc3339_ms(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis() as i64)
}

/// A read-only view of the directory over the cloud's state.
pub struct Directory<'a> {
    state: &'a AppState,
}

impl<'a> Directory<'a> {
    /// A view of the directory as the cloud's state holds it now (nothing is cached).
    pub fn new(state: &'a AppState) -> Self {
        Directory { state }
    }

    /// A role definition by GUID (any casing): a built-in, or a custom one an admin call added.
    pub fn role_definition(&self, guid: &str) -> Result<Option<RoleDefinition>, ArmError> {
        let guid = guid.to_ascii_lowercase();
        if let Some(b) = builtin_roles().into_iter().find(|r| r.name == guid) {
            return Ok(Some(b));
        }
        Ok(self
            .state
            .db
            .role_definition(&guid)?
            .and_then(|doc| serde_json::from_value(doc).ok()))
    }

    /// Every role definition: the built-ins, then the custom ones by GUID.
    pub fn role_definitions(&self) -> Result<Vec<RoleDefinition>, ArmError> {
        let mut all = builtin_roles();
        all.extend(
            self.state
                .db
                .role_definitions()?
                .into_iter()
                .filter_map(|doc| serde_json::from_value(doc).ok()),
        );
        Ok(all)
    }

    /// `principal` and every group it belongs to, directly or through nested groups (lowercase).
    pub fn identities_of(&self, principal: &str) -> Result<BTreeSet<String>, ArmError> {
        let mut seen = BTreeSet::from([principal.to_ascii_lowercase()]);
        let mut frontier = vec![principal.to_ascii_lowercase()];
        while let Some(p) = frontier.pop() {
            for group in self.state.db.groups_of(&p)? {
                if seen.insert(group.clone()) {
                    frontier.push(group);
                }
            }
        }
        Ok(seen)
    }

    /// Whether `principal` may perform data action `action` (e.g.
    /// `Microsoft.KeyVault/vaults/keys/encrypt/action`) on `resource`.
    pub fn check_data_action(&self, principal: &str, resource: &str, action: &str) -> Result<Decision, ArmError> {
        self.check(principal, resource, action, true)
    }

    /// Whether `principal` may perform management action `action` (e.g.
    /// `Microsoft.KeyVault/vaults/privateEndpointConnectionsApproval/action`) on `resource`.
    pub fn check_action(&self, principal: &str, resource: &str, action: &str) -> Result<Decision, ArmError> {
        self.check(principal, resource, action, false)
    }

    fn check(&self, principal: &str, resource: &str, action: &str, data: bool) -> Result<Decision, ArmError> {
        let who = self.identities_of(principal)?;
        let delay = self.state.rbac_propagation().as_millis() as i64;
        let now = now_ms();
        let prefix = format!("/subscriptions/{}/", subscription_of(resource));
        let live = self.state.db.resources(ASSIGNMENT_TYPE, &prefix)?;
        let deleted = self.state.db.resources(DELETED_ASSIGNMENT_TYPE, &prefix)?;
        let mut pending: Option<i64> = None;
        for a in live.iter().chain(deleted.iter()) {
            let p = &a["properties"];
            let principal_matches = p["principalId"]
                .as_str()
                .is_some_and(|id| who.contains(&id.to_ascii_lowercase()));
            if !principal_matches || !p["scope"].as_str().is_some_and(|s| scope_covers(s, resource)) {
                continue;
            }
            let Some(role) = p["roleDefinitionId"]
                .as_str()
                .map(definition_guid)
                .map(|g| self.role_definition(&g))
                .transpose()?
                .flatten()
            else {
                continue;
            };
            if !role.allows(action, data) {
                continue;
            }
            // Assignments from before creation times were recorded count as long propagated.
            let effective = p["createdOn"].as_str().and_then(rfc3339_ms).unwrap_or(i64::MIN) + delay;
            let revoked = a["kmsflowDeletedMs"].as_i64().map(|d| d + delay);
            if revoked.is_some_and(|r| now >= r) {
                continue;
            }
            if now >= effective {
                return Ok(Decision::Allowed);
            }
            pending = Some(pending.map_or(effective, |p| p.min(effective)));
        }
        Ok(match pending {
            Some(effective_at_ms) => Decision::NotYetPropagated { effective_at_ms },
            None => Decision::Denied,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_follow_azure() {
        assert!(wildcard_match(
            "Microsoft.KeyVault/vaults/keys/*",
            "Microsoft.KeyVault/vaults/keys/encrypt/action"
        ));
        assert!(wildcard_match(
            "microsoft.keyvault/vaults/*/read",
            "Microsoft.KeyVault/vaults/keys/read"
        ));
        assert!(wildcard_match("*", "Microsoft.KeyVault/vaults/write"));
        assert!(!wildcard_match(
            "Microsoft.KeyVault/vaults/*/read",
            "Microsoft.KeyVault/vaults/keys/encrypt/action"
        ));
        assert!(!wildcard_match(
            "Microsoft.KeyVault/vaults/keys/read",
            "Microsoft.KeyVault/vaults/keys/read/extra"
        ));
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
        assert!(!wildcard_match("a*b*c", "aXXbYY"));
    }

    #[test]
    fn service_encryption_user_cannot_encrypt() {
        let roles = builtin_roles();
        let cseu = roles
            .iter()
            .find(|r| r.name == "e147488a-f6f5-4113-8e2d-b22465e65bf6")
            .unwrap();
        assert!(cseu.allows("Microsoft.KeyVault/vaults/keys/wrap/action", true));
        assert!(!cseu.allows("Microsoft.KeyVault/vaults/keys/encrypt/action", true));
        assert!(!cseu.allows("Microsoft.KeyVault/vaults/keys/decrypt/action", true));
        let contributor = roles.iter().find(|r| r.role_name == "Key Vault Contributor").unwrap();
        assert!(contributor.allows(
            "Microsoft.KeyVault/vaults/privateEndpointConnectionsApproval/action",
            false
        ));
        assert!(!contributor.allows("Microsoft.KeyVault/vaults/keys/read", true));
    }

    #[test]
    fn not_data_actions_subtract_within_a_role() {
        let p = Permission {
            data_actions: vec!["Microsoft.KeyVault/vaults/keys/*".into()],
            not_data_actions: vec!["Microsoft.KeyVault/vaults/keys/decrypt/action".into()],
            ..Default::default()
        };
        assert!(p.allows("Microsoft.KeyVault/vaults/keys/encrypt/action", true));
        assert!(!p.allows("Microsoft.KeyVault/vaults/keys/decrypt/action", true));
        assert!(!p.allows("Microsoft.KeyVault/vaults/keys/encrypt/action", false));
    }

    #[test]
    fn created_on_round_trips() {
        let now = crate::http::now_ms();
        let parsed = rfc3339_ms(&crate::http::now_rfc3339()).unwrap();
        assert!((parsed - now).abs() < 1000, "{parsed} vs {now}");
    }

    #[test]
    fn scopes_cover_descendants_only() {
        let rg = "/subscriptions/s/resourceGroups/RG1";
        assert!(scope_covers(
            rg,
            "/subscriptions/s/resourcegroups/rg1/providers/Microsoft.KeyVault/vaults/kv"
        ));
        assert!(!scope_covers(rg, "/subscriptions/s/resourcegroups/rg10"));
        assert!(!scope_covers(rg, "/subscriptions/s"));
    }
}
