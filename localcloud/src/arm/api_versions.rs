//! The `api-version` values each resource type accepts, and ARM's refusal of any other.
//!
//! Lists are taken from azure-reference.md: managed clusters §1.1 (the stable folders of
//! `Microsoft.ContainerService/aks/stable`, plus `2017-08-31`, the version AKS writes into its
//! `operationresults` URLs, §1.2, for the operation endpoints only); key vaults §2; user-assigned
//! identities §4 (plus the older stable `2018-11-30` of the same spec folder); role assignments
//! §4 (plus the original stable `2015-07-01`); resource groups and subscriptions (served by ARM
//! itself, `Microsoft.Resources`) the stable folders of
//! `Azure/azure-rest-api-specs:specification/resources/resource-manager/Microsoft.Resources/resources/stable`,
//! which include `2021-04-01` used by §5's provider listing.
//!
//! The refusal has ARM's two shapes (see e.g. Azure/azure-cli#23985 and #28038 for real bodies):
//! a resource provider's type answers 400 `NoRegisteredProviderFound` ("No registered resource
//! provider found for location '…' and API version '…' for type '…'. The supported api-versions
//! are '…'."), ARM's own types answer 400 `InvalidApiVersionParameter` ("The api-version '…' is
//! invalid. The supported versions are '…'."). Both name every supported version.
//!
//! Types this cloud does not know are not checked here (their route answers for them).

use crate::http::ArmError;

/// `Microsoft.ContainerService/managedClusters` (reference §1.1).
pub const MANAGED_CLUSTERS: &[&str] = &[
    "2025-08-01",
    "2025-09-01",
    "2025-10-01",
    "2026-01-01",
    "2026-02-01",
    "2026-03-01",
    "2026-04-01",
    "2026-05-01",
    "2026-06-01",
    "2026-07-01",
    "2026-08-01",
    "2026-10-01",
];

/// The extra version AKS's `operationresults` URLs carry (reference §1.2).
pub const AKS_OPERATION_RESULTS: &str = "2017-08-31";

/// `Microsoft.KeyVault/vaults` and `checkNameAvailability` (reference §2).
pub const VAULTS: &[&str] = &["2024-11-01", "2025-05-01"];

/// `Microsoft.ManagedIdentity/userAssignedIdentities` (reference §4).
pub const IDENTITIES: &[&str] = &["2018-11-30", "2023-01-31", "2024-11-30"];

/// `Microsoft.Authorization/roleAssignments` (reference §4).
pub const ROLE_ASSIGNMENTS: &[&str] = &["2015-07-01", "2022-04-01"];

/// `Microsoft.Resources`: resource groups and subscriptions.
pub const RESOURCES: &[&str] = &[
    "2016-02-01",
    "2017-05-10",
    "2018-02-01",
    "2018-05-01",
    "2019-03-01",
    "2019-05-01",
    "2019-05-10",
    "2019-07-01",
    "2019-08-01",
    "2019-10-01",
    "2020-06-01",
    "2020-08-01",
    "2020-10-01",
    "2021-01-01",
    "2021-04-01",
    "2022-09-01",
    "2023-07-01",
    "2024-03-01",
    "2024-07-01",
];

/// Who answers for a resource type, which decides the refusal's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// ARM itself (`Microsoft.Resources`): `InvalidApiVersionParameter`.
    Arm,
    /// A resource provider, with the type's name as ARM writes it in the message.
    Provider(&'static str),
}

/// The versions accepted for the request whose lowercased path segments are `lower`, with who
/// owns that type; `None` for a path this cloud does not route (no check).
pub fn for_path(lower: &[&str]) -> Option<(Owner, Vec<&'static str>)> {
    let provider = |i: usize| -> Option<(&str, &str)> { Some((*lower.get(i)?, *lower.get(i + 1)?)) };
    // A role assignment's scope can be any resource, so it is recognised before the others.
    if lower
        .windows(2)
        .any(|w| w == ["microsoft.authorization", "roleassignments"])
    {
        return Some((Owner::Provider("roleAssignments"), ROLE_ASSIGNMENTS.to_vec()));
    }
    match lower {
        ["subscriptions", _] | ["subscriptions", _, "resourcegroups"] | ["subscriptions", _, "resourcegroups", _] => {
            Some((Owner::Arm, RESOURCES.to_vec()))
        }
        ["subscriptions", _, "providers", "microsoft.containerservice", "locations", _, "operations" | "operationresults", ..] =>
        {
            let mut v = MANAGED_CLUSTERS.to_vec();
            v.push(AKS_OPERATION_RESULTS);
            Some((Owner::Provider("locations/operations"), v))
        }
        ["subscriptions", _, "providers", "microsoft.containerservice", "managedclusters"] => {
            Some((Owner::Provider("managedClusters"), MANAGED_CLUSTERS.to_vec()))
        }
        ["subscriptions", _, "providers", "microsoft.keyvault", "checknameavailability"] => {
            Some((Owner::Provider("checkNameAvailability"), VAULTS.to_vec()))
        }
        ["subscriptions", _, "resourcegroups", _, "providers", ..] => match provider(5)? {
            ("microsoft.containerservice", "managedclusters") => {
                Some((Owner::Provider("managedClusters"), MANAGED_CLUSTERS.to_vec()))
            }
            ("microsoft.keyvault", "vaults") => Some((Owner::Provider("vaults"), VAULTS.to_vec())),
            ("microsoft.managedidentity", "userassignedidentities") => {
                Some((Owner::Provider("userAssignedIdentities"), IDENTITIES.to_vec()))
            }
            _ => None,
        },
        _ => None,
    }
}

/// Checks `version` for the request whose lowercased segments are `lower`; `location` names the
/// region in a provider's refusal. Versions compare exactly (ARM's are lowercase dates).
pub fn check(lower: &[&str], version: &str, location: &str) -> Result<(), ArmError> {
    let Some((owner, supported)) = for_path(lower) else {
        return Ok(());
    };
    if supported.contains(&version) {
        return Ok(());
    }
    let list = supported.iter().rev().copied().collect::<Vec<_>>().join(", ");
    Err(match owner {
        Owner::Arm => ArmError::bad_request(
            "InvalidApiVersionParameter",
            format!("The api-version '{version}' is invalid. The supported versions are '{list}'."),
        ),
        Owner::Provider(rtype) => ArmError::bad_request(
            "NoRegisteredProviderFound",
            format!("No registered resource provider found for location '{location}' and API version '{version}' for type '{rtype}'. The supported api-versions are '{list}'. The supported locations are '{location}'."),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(path: &str) -> Vec<String> {
        path.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_ascii_lowercase)
            .collect()
    }

    fn check_path(path: &str, version: &str) -> Result<(), ArmError> {
        let s = segs(path);
        let l: Vec<&str> = s.iter().map(String::as_str).collect();
        check(&l, version, "westeurope")
    }

    #[test]
    fn each_type_has_its_own_list() {
        let cluster = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/a";
        assert!(check_path(cluster, "2026-01-01").is_ok());
        let e = check_path(cluster, "2025-05-01").unwrap_err();
        assert_eq!(e.code, "NoRegisteredProviderFound");
        assert!(e.message.contains("'2026-10-01, "), "{}", e.message);
        let vault = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv";
        assert!(check_path(vault, "2025-05-01").is_ok());
        assert!(check_path(vault, "2026-01-01").is_err());
        let e = check_path("/subscriptions/s/resourceGroups/rg", "2025-05-01").unwrap_err();
        assert_eq!(e.code, "InvalidApiVersionParameter");
        assert!(check_path("/subscriptions/s/resourceGroups/rg", "2021-04-01").is_ok());
        let role = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Authorization/roleAssignments/x";
        assert!(check_path(role, "2022-04-01").is_ok());
        assert!(check_path(role, "2021-04-01").is_err());
        let results = "/subscriptions/s/providers/Microsoft.ContainerService/locations/westeurope/operationresults/x";
        assert!(check_path(results, AKS_OPERATION_RESULTS).is_ok());
        assert!(check_path(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Unknown/things/x",
            "1"
        )
        .is_ok());
    }

    /// Every api-version the host sends by default (host/src/cloud/azure/mod.rs
    /// `ApiVersions::default`) is accepted for its type.
    #[test]
    fn the_hosts_default_versions_are_accepted() {
        for (path, version) in [
            ("/subscriptions/s/resourceGroups/rg", "2021-04-01"),
            (
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv",
                "2025-05-01",
            ),
            (
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/i",
                "2023-01-31",
            ),
            (
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Authorization/roleAssignments/r",
                "2022-04-01",
            ),
            (
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/a",
                "2026-01-01",
            ),
        ] {
            assert!(check_path(path, version).is_ok(), "{path} {version}");
        }
    }
}
