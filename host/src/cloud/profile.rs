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
        Ok(LocalProfile::read(state_dir)?.cloud())
    }

    /// The profile of a running local cloud started in this process.
    #[cfg(feature = "local-cloud")]
    pub fn from_local(p: &kmsflow_localcloud::CloudProfile) -> CloudProfile {
        LocalProfile::from(p).cloud()
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

/// The name of the profile a local cloud publishes in its state directory.
pub const LOCAL_PROFILE_FILE: &str = "profile.json";

/// What a local cloud publishes in `{state_dir}/profile.json` while it serves, as far as a client
/// needs it: endpoints, the CA to trust, the tenant and the operator's credentials.
///
/// This mirrors the file (fields the client does not need are ignored), so that connecting to a
/// local cloud another process serves (`kmsflow local serve`) needs none of the emulator's code:
/// the library built without the `local-cloud` feature reads it too. A unit test built with the
/// feature checks the mirror against the emulator's own type.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct LocalProfile {
    pub resource_manager: String,
    pub authority_host: String,
    pub graph: String,
    pub keyvault_dns_suffix: String,
    pub arm_audience: String,
    pub keyvault_audience: String,
    pub graph_audience: String,
    pub tenant_id: String,
    pub default_subscription: String,
    /// PEM of the CA that signed the local cloud's server certificates.
    pub ca_pem: String,
    /// The operator principal the local cloud created (an app registration with a secret).
    pub operator: LocalOperator,
}

/// The local cloud's operator principal, as its profile publishes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct LocalOperator {
    pub client_id: String,
    pub client_secret: String,
    pub object_id: String,
}

impl LocalProfile {
    /// Reads the profile a local cloud published in `state_dir`. It says nothing about whether
    /// that cloud still serves (see [`LocalProfile::is_serving`]).
    pub fn read(state_dir: &Path) -> Result<LocalProfile, ProfileError> {
        let path = state_dir.join(LOCAL_PROFILE_FILE);
        // Through the bounded reader: a regular file of at most the config size.
        let bytes = crate::limits::read_file(&path, crate::limits::CONFIG_FILE_MAX, "profiles")
            .map_err(|e| ProfileError::Local(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| ProfileError::Local(format!("{}: {e}", path.display())))
    }

    /// The loopback port of the Resource Manager endpoint, when the URL has one.
    pub fn port(&self) -> Option<u16> {
        self.resource_manager
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
    }

    /// Whether something accepts connections on the profile's port on 127.0.0.1.
    pub fn is_serving(&self) -> bool {
        self.port()
            .is_some_and(|port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
    }

    /// The cloud profile the clients use: these endpoints, the CA trusted besides the system
    /// roots, and `*.localhost` vault hosts resolved to loopback.
    pub fn cloud(&self) -> CloudProfile {
        let trim = |s: &str| s.trim_end_matches('/').to_string();
        CloudProfile {
            name: "local".into(),
            resource_manager: trim(&self.resource_manager),
            authority_host: trim(&self.authority_host),
            graph: trim(&self.graph),
            keyvault_dns_suffix: self.keyvault_dns_suffix.clone(),
            arm_audience: self.arm_audience.clone(),
            keyvault_audience: self.keyvault_audience.clone(),
            graph_audience: self.graph_audience.clone(),
            extra_ca_pem: Some(self.ca_pem.clone()),
            loopback_names: true,
        }
    }
}

#[cfg(feature = "local-cloud")]
impl From<&kmsflow_localcloud::CloudProfile> for LocalProfile {
    fn from(p: &kmsflow_localcloud::CloudProfile) -> Self {
        LocalProfile {
            resource_manager: p.resource_manager.clone(),
            authority_host: p.authority_host.clone(),
            graph: p.graph.clone(),
            keyvault_dns_suffix: p.keyvault_dns_suffix.clone(),
            arm_audience: p.arm_audience.clone(),
            keyvault_audience: p.keyvault_audience.clone(),
            graph_audience: p.graph_audience.clone(),
            tenant_id: p.tenant_id.clone(),
            default_subscription: p.default_subscription.clone(),
            ca_pem: p.ca_pem.clone(),
            operator: LocalOperator {
                client_id: p.operator.client_id.clone(),
                client_secret: p.operator.client_secret.clone(),
                object_id: p.operator.object_id.clone(),
            },
        }
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

    /// The host's mirror of `profile.json` reads what the emulator writes, field for field.
    #[cfg(feature = "local-cloud")]
    #[test]
    fn local_profile_mirrors_the_emulators_file() {
        let published = kmsflow_localcloud::CloudProfile {
            name: "local".into(),
            resource_manager: "https://127.0.0.1:4443/".into(),
            authority_host: "https://127.0.0.1:4443/".into(),
            graph: "https://127.0.0.1:4443/".into(),
            keyvault_dns_suffix: "vault.localhost:4443".into(),
            arm_audience: "https://management.local/".into(),
            keyvault_audience: "https://vault.local".into(),
            graph_audience: "https://graph.local".into(),
            tenant_id: "t".into(),
            default_subscription: "s".into(),
            ca_pem: "-----BEGIN CERTIFICATE-----".into(),
            ca_path: "/tmp/ca.pem".into(),
            admin_key: "k".into(),
            operator: kmsflow_localcloud::OperatorCredentials {
                client_id: "c".into(),
                client_secret: "x".into(),
                object_id: "o".into(),
            },
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(kmsflow_localcloud::PROFILE_FILE),
            serde_json::to_string(&published).unwrap(),
        )
        .unwrap();
        assert_eq!(LOCAL_PROFILE_FILE, kmsflow_localcloud::PROFILE_FILE);
        let read = LocalProfile::read(dir.path()).unwrap();
        assert_eq!(read, LocalProfile::from(&published));
        assert_eq!(read.port(), Some(4443));
        assert_eq!(read.cloud(), CloudProfile::from_local(&published));
        assert_eq!(read.cloud().resource_manager, "https://127.0.0.1:4443");
    }

    #[test]
    fn a_missing_local_profile_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = LocalProfile::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("profile.json"), "{err}");
    }
}
