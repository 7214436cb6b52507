//! `kmsflow:workflow/arm`: generic, grant-scoped ARM requests for teams' own plugins — as an
//! allow-list.
//!
//! A request is classified from its parsed [`ResourceId`] (resource type, name, trailing action)
//! and body before the grant check. GET of a resource or collection needs `read`, unless what it
//! names hands out credentials or secrets. A write is allowed only for the resource types in
//! [`ARM_TABLE`], and needs the action the dedicated capability would need for the same effect
//! (a role assignment needs `roles`, a key `keys`, a cluster change that can touch KMS or
//! versions `kms` and `upgrade`). A POST is allowed only for the actions in the table, none of
//! which returns a credential. Everything else is refused as `denied`, with the reason.

use super::{capability_call, CapabilityError, Expect, StepContext};
use crate::grants::Action;
use crate::names::{self, MAX_REQUEST_BODY_BYTES};
use crate::resource_id::ResourceId;
use crate::wit::arm::{self, Method, Response};
use crate::wit::types::ErrorKind;
use serde_json::Value;

/// One row of what `arm.request` allows: method, target, the actions it needs.
#[derive(Debug, Clone, Copy)]
pub struct ArmRule {
    pub method: &'static str,
    /// A resource type (`namespace/type[/child]`) or `type → action` for a POST.
    pub target: &'static str,
    pub needs: &'static [Action],
    pub note: &'static str,
}

/// The table the README shows; [`classify`] implements it and a test walks it.
pub const ARM_TABLE: &[ArmRule] = &[
    ArmRule {
        method: "GET",
        target: "any resource or collection",
        needs: &[Action::Read],
        note: "except the credential types and actions below",
    },
    ArmRule {
        method: "PUT, PATCH",
        target: "resource groups",
        needs: &[Action::Write],
        note: "",
    },
    ArmRule {
        method: "PUT, PATCH",
        target: "Microsoft.Resources/tags",
        needs: &[Action::Write],
        note: "",
    },
    ArmRule {
        method: "PUT, PATCH",
        target: "Microsoft.ManagedIdentity/userAssignedIdentities",
        needs: &[Action::Write],
        note: "",
    },
    ArmRule {
        method: "PATCH",
        target: "Microsoft.KeyVault/vaults",
        needs: &[Action::Write],
        note: "+ `roles` if it touches accessPolicies, enableRbacAuthorization or tenantId",
    },
    ArmRule {
        method: "PUT",
        target: "Microsoft.KeyVault/vaults",
        needs: &[Action::Write, Action::Roles],
        note: "a PUT sets the access policies",
    },
    ArmRule {
        method: "PUT",
        target: "Microsoft.KeyVault/vaults/accessPolicies",
        needs: &[Action::Roles],
        note: "add, replace, remove",
    },
    ArmRule {
        method: "PUT",
        target: "Microsoft.KeyVault/vaults/keys",
        needs: &[Action::Keys],
        note: "",
    },
    ArmRule {
        method: "PUT",
        target: "Microsoft.Authorization/roleAssignments",
        needs: &[Action::Roles],
        note: "at any scope",
    },
    ArmRule {
        method: "PATCH",
        target: "Microsoft.ContainerService/managedClusters",
        needs: &[Action::Write],
        note: "tags only",
    },
    ArmRule {
        method: "PUT, PATCH",
        target: "Microsoft.ContainerService/managedClusters",
        needs: &[Action::Write, Action::Kms, Action::Upgrade],
        note: "anything but tags can change the KMS block or versions",
    },
    ArmRule {
        method: "PUT, PATCH",
        target: "Microsoft.ContainerService/managedClusters/agentPools",
        needs: &[Action::Write, Action::Upgrade],
        note: "",
    },
    ArmRule {
        method: "POST",
        target: "managedClusters → start, stop, abort",
        needs: &[Action::Write],
        note: "",
    },
    ArmRule {
        method: "POST",
        target: "managedClusters/agentPools → upgradeNodeImageVersion",
        needs: &[Action::Upgrade],
        note: "",
    },
    ArmRule {
        method: "POST",
        target: "managedClusters/agentPools → abort",
        needs: &[Action::Write],
        note: "",
    },
    ArmRule {
        method: "POST",
        target: "{provider} → checkNameAvailability",
        needs: &[Action::Read],
        note: "subscription level",
    },
];

/// Resource types whose GET (or any request) answers credentials or secrets.
const CREDENTIAL_TYPES: [&str; 4] = [
    "microsoft.containerservice/managedclusters/accessprofiles",
    "microsoft.containerservice/managedclusters/commandresults",
    "microsoft.keyvault/vaults/secrets",
    "microsoft.web/sites/config",
];

/// Trailing segments (actions, or collections) that answer or mint credentials.
fn credential_action(trailing: &str) -> bool {
    trailing.starts_with("list")
        || trailing.starts_with("regenerate")
        || trailing.contains("credential")
        || trailing.contains("secret")
        || matches!(
            trailing,
            "runcommand" | "getaccesstoken" | "resetaadprofile" | "resetserviceprincipalprofile"
        )
}

/// Why `arm.request` refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub reason: String,
}

fn refuse(code: &'static str, reason: String) -> Refusal {
    Refusal { code, reason }
}

/// Whether `body` sets anything besides `tags` (and the resource's own id fields).
fn only_tags(body: Option<&Value>) -> bool {
    body.and_then(Value::as_object)
        .is_some_and(|o| o.keys().all(|k| k == "tags"))
}

fn touches_properties(body: Option<&Value>, keys: &[&str]) -> bool {
    body.and_then(|b| b.get("properties"))
        .and_then(Value::as_object)
        .is_some_and(|p| p.keys().any(|k| keys.iter().any(|x| k.eq_ignore_ascii_case(x))))
}

/// The actions `method` on `id` with `body` needs, or why it is refused. Pure: no I/O.
pub fn classify(method: Method, id: &ResourceId, body: Option<&Value>) -> Result<Vec<Action>, Refusal> {
    let path = id.arm_path();
    let kind = path.resource_type.as_str();
    let trailing = path.trailing.as_deref();
    // A credential type anywhere in the chain: its children answer secrets too.
    if CREDENTIAL_TYPES
        .iter()
        .any(|t| kind == *t || kind.starts_with(&format!("{t}/")))
        || trailing.is_some_and(credential_action)
    {
        return Err(refuse(
            "CredentialsNotExposed",
            format!("{id} answers credentials or secrets, which plugins may not read"),
        ));
    }
    let needs: &[Action] = match method {
        Method::Get => &[Action::Read],
        Method::Post => match (kind, trailing.unwrap_or_default()) {
            ("microsoft.containerservice/managedclusters", "start" | "stop" | "abort") => &[Action::Write],
            ("microsoft.containerservice/managedclusters/agentpools", "upgradenodeimageversion") => &[Action::Upgrade],
            ("microsoft.containerservice/managedclusters/agentpools", "abort") => &[Action::Write],
            (provider, "checknameavailability") if !provider.contains('/') => &[Action::Read],
            _ => {
                return Err(refuse(
                    "ArmActionNotAllowed",
                    format!(
                        "POST {id} is not in the table of actions arm.request allows (see `kmsflow` README, \"The sandbox\"); \
                         use a dedicated capability"
                    ),
                ))
            }
        },
        Method::Put | Method::Patch => {
            if trailing.is_some() || !path.named {
                return Err(refuse(
                    "ArmWriteNotClassified",
                    format!("{id} is not one resource: writes name a resource, not a collection or an action"),
                ));
            }
            let put = matches!(method, Method::Put);
            match kind {
                "microsoft.resources/resourcegroups"
                | "microsoft.resources/tags"
                | "microsoft.managedidentity/userassignedidentities" => &[Action::Write],
                "microsoft.keyvault/vaults"
                    if put || touches_properties(body, &["accessPolicies", "enableRbacAuthorization", "tenantId"]) =>
                {
                    &[Action::Write, Action::Roles]
                }
                "microsoft.keyvault/vaults" => &[Action::Write],
                "microsoft.keyvault/vaults/accesspolicies" if put => &[Action::Roles],
                "microsoft.keyvault/vaults/keys" if put => &[Action::Keys],
                "microsoft.authorization/roleassignments" if put => &[Action::Roles],
                "microsoft.containerservice/managedclusters" if !put && only_tags(body) => &[Action::Write],
                "microsoft.containerservice/managedclusters" => &[Action::Write, Action::Kms, Action::Upgrade],
                "microsoft.containerservice/managedclusters/agentpools" => &[Action::Write, Action::Upgrade],
                _ => {
                    return Err(refuse(
                        "ArmWriteNotClassified",
                        format!(
                            "{} of a `{kind}` is not in the table of writes arm.request allows; \
                             use a dedicated capability",
                            if put { "PUT" } else { "PATCH" }
                        ),
                    ))
                }
            }
        }
    };
    Ok(needs.to_vec())
}

impl arm::Host for StepContext {
    async fn request(
        &mut self,
        method: Method,
        path: String,
        api_version: String,
        body: Option<String>,
    ) -> Result<Response, CapabilityError> {
        let name = "arm.request";
        let id = self.resource_arg(name, &[], &path, Expect::Any)?;
        self.arg(name, names::api_version(&api_version))?;
        let parsed = match &body {
            Some(text) if text.len() > MAX_REQUEST_BODY_BYTES => {
                return Err(CapabilityError::guest(
                    ErrorKind::Invalid,
                    "RequestTooLarge",
                    format!(
                        "{name}: the body is {} bytes; the limit is {MAX_REQUEST_BODY_BYTES}",
                        text.len()
                    ),
                ))
            }
            Some(text) => Some(serde_json::from_str::<Value>(text).map_err(|e| {
                CapabilityError::guest(
                    ErrorKind::Invalid,
                    "InvalidJson",
                    format!("{name}: the body is not JSON: {e}"),
                )
            })?),
            None => None,
        };
        let actions = match classify(method, &id, parsed.as_ref()) {
            Ok(actions) => actions,
            Err(refusal) => {
                let call = super::Call {
                    name,
                    actions: Vec::new(),
                    resource: Some(&id),
                    args: format!("{method:?} refused: {}", refusal.code),
                };
                self.report_denied(&call, &id.to_string())?;
                return Err(CapabilityError::guest(
                    ErrorKind::Denied,
                    refusal.code,
                    format!("{name}: {}", refusal.reason),
                ));
            }
        };
        capability_call!(self, "arm.request", actions, Some(&id), |b, auth| b.arm_request(
            auth,
            method,
            &id,
            &api_version,
            parsed.as_ref()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RG: &str = "/subscriptions/s/resourceGroups/rg";

    fn needs(method: Method, path: &str, body: Option<Value>) -> Result<Vec<Action>, &'static str> {
        classify(method, &ResourceId::parse(path).unwrap(), body.as_ref()).map_err(|r| r.code)
    }

    /// Walks every row of [`ARM_TABLE`] with an example request and checks the actions.
    #[test]
    fn the_table_is_what_classify_does() {
        let cluster = format!("{RG}/providers/Microsoft.ContainerService/managedClusters/aks1");
        let vault = format!("{RG}/providers/Microsoft.KeyVault/vaults/kv1");
        let examples: Vec<(Method, String, Option<Value>)> = vec![
            (Method::Get, cluster.clone(), None),
            (Method::Put, RG.to_string(), Some(json!({"location": "westeurope"}))),
            (
                Method::Put,
                format!("{cluster}/providers/Microsoft.Resources/tags/default"),
                Some(json!({})),
            ),
            (
                Method::Put,
                format!("{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1"),
                Some(json!({})),
            ),
            (
                Method::Patch,
                vault.clone(),
                Some(json!({"properties": {"publicNetworkAccess": "Disabled"}})),
            ),
            (Method::Put, vault.clone(), Some(json!({"properties": {}}))),
            (Method::Put, format!("{vault}/accessPolicies/add"), Some(json!({}))),
            (Method::Put, format!("{vault}/keys/k1"), Some(json!({}))),
            (
                Method::Put,
                format!("{vault}/providers/Microsoft.Authorization/roleAssignments/r1"),
                Some(json!({})),
            ),
            (Method::Patch, cluster.clone(), Some(json!({"tags": {"a": "b"}}))),
            (Method::Put, cluster.clone(), Some(json!({"properties": {}}))),
            (Method::Put, format!("{cluster}/agentPools/np1"), Some(json!({}))),
            (Method::Post, format!("{cluster}/stop"), None),
            (
                Method::Post,
                format!("{cluster}/agentPools/np1/upgradeNodeImageVersion"),
                None,
            ),
            (Method::Post, format!("{cluster}/agentPools/np1/abort"), None),
            (
                Method::Post,
                "/subscriptions/s/providers/Microsoft.KeyVault/checkNameAvailability".to_string(),
                None,
            ),
        ];
        assert_eq!(examples.len(), ARM_TABLE.len());
        for ((method, path, body), rule) in examples.into_iter().zip(ARM_TABLE) {
            assert_eq!(
                needs(method, &path, body),
                Ok(rule.needs.to_vec()),
                "{} {}",
                rule.method,
                rule.target
            );
        }
    }

    #[test]
    fn writes_need_the_dedicated_capabilitys_action() {
        let cluster = format!("{RG}/providers/Microsoft.ContainerService/managedClusters/aks1");
        let kms = json!({"properties": {"securityProfile": {"azureKeyVaultKms": {"enabled": false}}}});
        assert!(needs(Method::Patch, &cluster, Some(kms))
            .unwrap()
            .contains(&Action::Kms));
        let vault = format!("{RG}/providers/Microsoft.KeyVault/vaults/kv1");
        let policies = json!({"properties": {"accessPolicies": []}});
        assert!(needs(Method::Patch, &vault, Some(policies))
            .unwrap()
            .contains(&Action::Roles));
        assert_eq!(
            needs(
                Method::Put,
                &format!("{RG}/providers/Microsoft.Storage/storageAccounts/sa"),
                None
            ),
            Err("ArmWriteNotClassified")
        );
        assert_eq!(
            needs(Method::Post, &format!("{cluster}/rotateClusterCertificates"), None),
            Err("ArmActionNotAllowed")
        );
        assert_eq!(
            needs(Method::Put, &format!("{RG}/providers/Microsoft.KeyVault/vaults"), None),
            Err("ArmWriteNotClassified")
        );
    }

    #[test]
    fn credentials_are_refused_for_every_method_and_spelling() {
        let cluster = format!("{RG}/providers/Microsoft.ContainerService/managedClusters/aks1");
        for path in [
            format!("{cluster}/listClusterAdminCredential"),
            format!("{cluster}/LISTCLUSTERUSERCREDENTIAL"),
            format!("{cluster}/listClusterMonitoringUserCredential"),
            format!("{cluster}/accessProfiles/clusterAdmin"),
            format!("{cluster}/accessProfiles/clusterAdmin/listCredential"),
            format!("{cluster}/runCommand"),
            format!("{cluster}/commandResults/x"),
            format!("{RG}/providers/Microsoft.Storage/storageAccounts/sa/listKeys"),
            format!("{RG}/providers/Microsoft.Storage/storageAccounts/sa/listAccountSas"),
            format!("{RG}/providers/Microsoft.DocumentDB/databaseAccounts/db/listConnectionStrings"),
            format!("{RG}/providers/Microsoft.Search/searchServices/s/listAdminKeys"),
            format!("{RG}/providers/Microsoft.Web/sites/app/config/publishingcredentials/list"),
            format!("{RG}/providers/Microsoft.KeyVault/vaults/kv1/secrets/s1"),
            format!("{RG}/providers/Microsoft.ContainerService/managedClusters/providers/accessProfiles/clusterAdmin"),
        ] {
            for method in [Method::Get, Method::Post, Method::Put, Method::Patch] {
                assert_eq!(
                    needs(method, &path, Some(json!({}))),
                    Err("CredentialsNotExposed"),
                    "{method:?} {path}"
                );
            }
        }
    }
}
