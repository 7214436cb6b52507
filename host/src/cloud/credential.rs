//! Credentials through `azure_identity`, pointed at the profile's authority and transport.

use super::profile::CloudProfile;
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{AsyncRawResponse, ClientOptions, HttpClient, Request, Transport};
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};
use std::sync::Arc;

/// The transport `azure_identity` sends token requests through: our HTTP client, with every
/// answer recorded on the current capability call's wire report — a 429, 5xx or dropped
/// connection as a retry (the identity library's own retry policy then sends it again), so token
/// retries reach the journal like every other retry.
#[derive(Debug)]
struct RecordedTransport(reqwest::Client);

#[async_trait::async_trait]
impl HttpClient for RecordedTransport {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let outcome = HttpClient::execute_request(&self.0, request).await;
        match &outcome {
            Ok(response) => {
                let status = u16::from(response.status());
                if status == 429 || (500..600).contains(&status) {
                    super::wire::record_retry(&format!("token {status}"));
                } else {
                    super::wire::record(None);
                }
            }
            Err(_) => super::wire::record_retry("token: connection failed"),
        }
        outcome
    }
}

/// `azure_identity` client options for `profile`: its authority host, and our HTTP client (which
/// trusts the profile's CA) as the transport, recording every attempt.
pub fn client_options(profile: &CloudProfile, http: &reqwest::Client) -> ClientOptions {
    let mut custom = CustomConfiguration::default();
    custom.authority_host = profile.authority_host.clone();
    ClientOptions {
        transport: Some(Transport::new(Arc::new(RecordedTransport(http.clone())))),
        cloud: Some(Arc::new(CloudConfiguration::Custom(custom))),
        ..Default::default()
    }
}

/// A service principal with a client secret (the local cloud's operator, or `AZURE_CLIENT_*`).
pub fn client_secret(
    profile: &CloudProfile,
    http: &reqwest::Client,
    tenant_id: &str,
    client_id: &str,
    secret: &str,
) -> azure_core::Result<Arc<dyn TokenCredential>> {
    let options = ClientSecretCredentialOptions {
        client_options: client_options(profile, http),
    };
    let credential = ClientSecretCredential::new(
        tenant_id,
        client_id.to_string(),
        Secret::new(secret.to_string()),
        Some(options),
    )?;
    Ok(credential)
}

/// Where a target's credential comes from (`credential = "…"` in `kmsflow.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialSource {
    /// `az login`'s account (`az account get-access-token`).
    #[default]
    AzureCli,
    /// `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and `AZURE_CLIENT_SECRET`.
    Environment,
    /// A service principal: tenant and client id from the file, the secret from an environment
    /// variable (never from the file).
    ClientSecret,
    /// The machine's managed identity (IMDS), or a user-assigned one by client id.
    ManagedIdentity,
    /// AKS workload identity: `AZURE_FEDERATED_TOKEN_FILE` with `AZURE_CLIENT_ID`/`AZURE_TENANT_ID`.
    WorkloadIdentity,
}

/// Why a credential could not be built; never contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("credential `{source_name}` needs {what}")]
    Missing { source_name: &'static str, what: String },
    #[error("credential `{source_name}`: {message}")]
    Sdk { source_name: &'static str, message: String },
}

/// The ids a credential source may need (from the target's configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialSpec {
    pub source: CredentialSource,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    /// Environment variable holding the client secret (`client-secret`; default `AZURE_CLIENT_SECRET`).
    pub client_secret_env: Option<String>,
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Builds the credential `spec` describes, for `profile`'s authority and through `http`.
pub fn from_spec(
    profile: &CloudProfile,
    http: &reqwest::Client,
    spec: &CredentialSpec,
) -> Result<Arc<dyn TokenCredential>, CredentialError> {
    use azure_identity::{
        AzureCliCredential, AzureCliCredentialOptions, ClientAssertionCredentialOptions, ManagedIdentityCredential,
        ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
        WorkloadIdentityCredentialOptions,
    };
    let name = match spec.source {
        CredentialSource::AzureCli => "azure-cli",
        CredentialSource::Environment => "environment",
        CredentialSource::ClientSecret => "client-secret",
        CredentialSource::ManagedIdentity => "managed-identity",
        CredentialSource::WorkloadIdentity => "workload-identity",
    };
    let sdk = |e: azure_core::Error| CredentialError::Sdk {
        source_name: name,
        message: e.to_string(),
    };
    let missing = |what: &str| CredentialError::Missing {
        source_name: name,
        what: what.to_string(),
    };
    match spec.source {
        CredentialSource::AzureCli => {
            let options = AzureCliCredentialOptions {
                tenant_id: spec.tenant_id.clone(),
                ..Default::default()
            };
            Ok(AzureCliCredential::new(Some(options)).map_err(sdk)?)
        }
        CredentialSource::Environment => {
            let tenant = env_var("AZURE_TENANT_ID").ok_or_else(|| missing("AZURE_TENANT_ID in the environment"))?;
            let client = env_var("AZURE_CLIENT_ID").ok_or_else(|| missing("AZURE_CLIENT_ID in the environment"))?;
            let secret =
                env_var("AZURE_CLIENT_SECRET").ok_or_else(|| missing("AZURE_CLIENT_SECRET in the environment"))?;
            client_secret(profile, http, &tenant, &client, &secret).map_err(sdk)
        }
        CredentialSource::ClientSecret => {
            let tenant = spec.tenant_id.as_deref().ok_or_else(|| missing("`tenant-id`"))?;
            let client = spec.client_id.as_deref().ok_or_else(|| missing("`client-id`"))?;
            let var = spec.client_secret_env.as_deref().unwrap_or("AZURE_CLIENT_SECRET");
            let secret = env_var(var).ok_or_else(|| missing(&format!("the client secret in ${var}")))?;
            client_secret(profile, http, tenant, client, &secret).map_err(sdk)
        }
        CredentialSource::ManagedIdentity => {
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: spec.client_id.clone().map(UserAssignedId::ClientId),
                client_options: client_options(profile, http),
            };
            Ok(ManagedIdentityCredential::new(Some(options)).map_err(sdk)?)
        }
        CredentialSource::WorkloadIdentity => {
            let options = WorkloadIdentityCredentialOptions {
                credential_options: ClientAssertionCredentialOptions {
                    client_options: client_options(profile, http),
                },
                client_id: spec.client_id.clone(),
                tenant_id: spec.tenant_id.clone(),
                ..Default::default()
            };
            Ok(WorkloadIdentityCredential::new(Some(options)).map_err(sdk)?)
        }
    }
}
