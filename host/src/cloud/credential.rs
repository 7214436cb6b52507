//! Credentials through `azure_identity`, pointed at the profile's authority and transport.

use super::profile::CloudProfile;
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};
use std::sync::Arc;

/// `azure_identity` client options for `profile`: its authority host, and our HTTP client (which
/// trusts the profile's CA) as the transport.
pub fn client_options(profile: &CloudProfile, http: &reqwest::Client) -> ClientOptions {
    let mut custom = CustomConfiguration::default();
    custom.authority_host = profile.authority_host.clone();
    ClientOptions {
        transport: Some(Transport::new(Arc::new(http.clone()))),
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
