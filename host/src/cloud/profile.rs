//! Cloud profiles: what distinguishes AzureCloud from AzureChinaCloud, AzureUSGovernment, or the
//! local cloud — endpoints, token audiences, the Key Vault DNS suffix, and a CA to trust.

use std::path::Path;

/// The endpoints of one Azure cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudProfile {
    pub name: String,
    /// Resource Manager base URL, e.g. `https://management.azure.com`.
    pub resource_manager: String,
    /// Entra authority host, e.g. `https://login.microsoftonline.com`.
    pub authority_host: String,
    /// Microsoft Graph base URL.
    pub graph: String,
    /// Key Vault DNS suffix: vaults are `https://{name}.{suffix}`.
    pub keyvault_dns_suffix: String,
    /// Token audiences (scopes are `{audience}/.default`).
    pub arm_audience: String,
    pub keyvault_audience: String,
    pub graph_audience: String,
    /// A CA certificate (PEM) to trust besides the system roots (the local cloud's).
    pub extra_ca_pem: Option<String>,
    /// Resolve `*.localhost` to loopback (the local cloud's vault hosts).
    pub loopback_names: bool,
}

/// Why a profile could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("unknown cloud `{0}`; use AzureCloud, AzureChinaCloud, AzureUSGovernment or local")]
    Unknown(String),
    #[error("the local cloud's profile is unreadable: {0}")]
    Local(String),
}

fn azure(name: &str, arm: &str, login: &str, graph: &str, vault: &str) -> CloudProfile {
    CloudProfile {
        name: name.to_string(),
        resource_manager: arm.to_string(),
        authority_host: login.to_string(),
        graph: graph.to_string(),
        keyvault_dns_suffix: vault.to_string(),
        arm_audience: arm.to_string(),
        keyvault_audience: format!("https://{vault}"),
        graph_audience: graph.to_string(),
        extra_ca_pem: None,
        loopback_names: false,
    }
}

impl CloudProfile {
    /// A built-in Azure cloud by its `az cloud` name.
    pub fn builtin(name: &str) -> Result<CloudProfile, ProfileError> {
        Ok(match name {
            "AzureCloud" => azure(
                name,
                "https://management.azure.com",
                "https://login.microsoftonline.com",
                "https://graph.microsoft.com",
                "vault.azure.net",
            ),
            "AzureChinaCloud" => azure(
                name,
                "https://management.chinacloudapi.cn",
                "https://login.chinacloudapi.cn",
                "https://microsoftgraph.chinacloudapi.cn",
                "vault.azure.cn",
            ),
            "AzureUSGovernment" => azure(
                name,
                "https://management.usgovcloudapi.net",
                "https://login.microsoftonline.us",
                "https://graph.microsoft.us",
                "vault.usgovcloudapi.net",
            ),
            other => return Err(ProfileError::Unknown(other.to_string())),
        })
    }

    /// The profile a local cloud published in its state directory.
    pub fn local(state_dir: &Path) -> Result<CloudProfile, ProfileError> {
        let p = kmsflow_localcloud::read_profile(state_dir).map_err(|e| ProfileError::Local(e.to_string()))?;
        Ok(Self::from_local(&p))
    }

    /// The profile of a running local cloud.
    pub fn from_local(p: &kmsflow_localcloud::CloudProfile) -> CloudProfile {
        let trim = |s: &str| s.trim_end_matches('/').to_string();
        CloudProfile {
            name: "local".into(),
            resource_manager: trim(&p.resource_manager),
            authority_host: trim(&p.authority_host),
            graph: trim(&p.graph),
            keyvault_dns_suffix: p.keyvault_dns_suffix.clone(),
            arm_audience: p.arm_audience.clone(),
            keyvault_audience: p.keyvault_audience.clone(),
            graph_audience: p.graph_audience.clone(),
            extra_ca_pem: Some(p.ca_pem.clone()),
            loopback_names: true,
        }
    }

    /// `{audience}/.default` for Resource Manager.
    pub fn arm_scope(&self) -> String {
        format!("{}/.default", self.arm_audience.trim_end_matches('/'))
    }

    /// `{audience}/.default` for Key Vault.
    pub fn keyvault_scope(&self) -> String {
        format!("{}/.default", self.keyvault_audience.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sovereign_clouds_differ_in_every_endpoint() {
        let public = CloudProfile::builtin("AzureCloud").unwrap();
        let china = CloudProfile::builtin("AzureChinaCloud").unwrap();
        assert_eq!(public.arm_scope(), "https://management.azure.com/.default");
        assert_eq!(china.keyvault_scope(), "https://vault.azure.cn/.default");
        assert_ne!(public.authority_host, china.authority_host);
        assert!(CloudProfile::builtin("Moon").is_err());
    }
}
