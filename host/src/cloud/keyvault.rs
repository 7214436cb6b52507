//! The Key Vault data plane: the bearer-challenge flow (the first request goes without a token;
//! the 401's `WWW-Authenticate` names the authority and resource, which must be the vault host's
//! own suffix), then keys with the ARM client's retries.
//!
//! Every URL is built from a checked vault URL ([`KeyVaultClient::vault_url`]: `https`, the host
//! `{vault name}.{the target cloud's Key Vault suffix}`, nothing else) and checked segments
//! (key names and versions, see [`crate::names`]) with the `url` crate's segment API.

use super::arm::{ArmClient, ArmResponse, CloudError, RetryPolicy};
use azure_core::credentials::TokenCredential;
use reqwest::Method;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use url::Url;

/// The data-plane api-version unless the target sets another (`api-versions.keyvault`).
pub const DEFAULT_API_VERSION: &str = "7.5";

/// A data-plane client for every vault of one cloud and credential.
pub struct KeyVaultClient {
    http: reqwest::Client,
    credential: Arc<dyn TokenCredential>,
    policy: RetryPolicy,
    /// Per vault host: the client holding tokens for the resource its challenge named.
    clients: Mutex<HashMap<String, ArmClient>>,
    /// The data-plane api-version (checked like any api-version).
    api_version: String,
    /// The target cloud's Key Vault DNS suffix (`vault.azure.net`); vault hosts must end with it.
    dns_suffix: Option<String>,
}

/// `key="value"` pairs of a `Bearer` challenge.
fn challenge_params(header: &str) -> HashMap<String, String> {
    header
        .trim_start_matches("Bearer")
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_string()))
        .collect()
}

fn host_of(url: &str) -> String {
    url.split("://")
        .nth(1)
        .unwrap_or(url)
        .split(['/', ':'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

impl KeyVaultClient {
    pub fn new(http: reqwest::Client, credential: Arc<dyn TokenCredential>, policy: RetryPolicy) -> Self {
        KeyVaultClient {
            http,
            credential,
            policy,
            clients: Mutex::new(HashMap::new()),
            api_version: DEFAULT_API_VERSION.to_string(),
            dns_suffix: None,
        }
    }

    /// Uses data-plane api-version `version` (already checked by `names::api_version`).
    pub fn with_api_version(mut self, version: &str) -> Self {
        self.api_version = version.to_string();
        self
    }

    /// Accept only vault hosts `{name}.{suffix}` (the target cloud's Key Vault DNS suffix).
    pub fn with_dns_suffix(mut self, suffix: &str) -> Self {
        self.dns_suffix = Some(suffix.trim_matches('.').to_ascii_lowercase());
        self
    }

    /// Checks the `vaultUri` Resource Manager reported for vault `name`: `https`, no user
    /// info, query or path, and the host `{name}.{suffix}`. The result is the only base the
    /// data-plane calls are built on.
    pub fn vault_url(&self, vault_uri: &str, name: &str) -> Result<Url, CloudError> {
        let bad = |why: &str| {
            CloudError::Invalid(format!(
                "vault {name}: its vaultUri `{}` {why}",
                crate::resource_id::shorten(vault_uri)
            ))
        };
        let url = Url::parse(vault_uri).map_err(|_| bad("is not a URL"))?;
        if url.scheme() != "https" || !url.username().is_empty() || url.password().is_some() {
            return Err(bad("is not a plain https URL"));
        }
        if url.query().is_some() || url.fragment().is_some() || !matches!(url.path(), "" | "/") {
            return Err(bad("has a path, query or fragment"));
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let expected = match &self.dns_suffix {
            Some(suffix) => host == format!("{}.{suffix}", name.to_ascii_lowercase()),
            None => host.split('.').next() == Some(name.to_ascii_lowercase().as_str()) && host.contains('.'),
        };
        if !expected {
            return Err(bad("does not name this vault on this cloud's Key Vault host"));
        }
        Ok(url)
    }

    /// The client for `vault`'s host: cached per host, else discovered through the bearer
    /// challenge (an unauthenticated `GET /keys`, answered 401 with `WWW-Authenticate`). The probe
    /// is retried like any call — throttling, 5xx, a dropped connection, or a host that does not
    /// answer yet (a new vault's DNS name is registered after its creation, reference §2) — within
    /// the retry policy, each retry recorded on the call's wire report.
    async fn client_for(&self, vault: &Url) -> Result<ArmClient, CloudError> {
        let host = vault.host_str().unwrap_or_default().to_ascii_lowercase();
        if let Some(c) = self.clients.lock().unwrap_or_else(|p| p.into_inner()).get(&host) {
            return Ok(c.clone());
        }
        let header = self.challenge(vault).await?;
        let params = challenge_params(&header);
        let resource = params
            .get("resource")
            .or_else(|| params.get("scope"))
            .cloned()
            .ok_or_else(|| CloudError::Auth(format!("the challenge of {vault} names no resource")))?;
        let resource_host = host_of(&resource);
        if !host.ends_with(&format!(".{resource_host}")) {
            return Err(CloudError::Auth(format!(
                "the challenge resource {resource} does not match the vault host {host}"
            )));
        }
        let scope = format!(
            "{}/.default",
            resource.trim_end_matches("/.default").trim_end_matches('/')
        );
        let client = ArmClient::new(self.http.clone(), "", &scope, Arc::clone(&self.credential), self.policy);
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(host, client.clone());
        Ok(client)
    }

    /// The `WWW-Authenticate` header of `vault`'s challenge, with retries.
    async fn challenge(&self, vault: &Url) -> Result<String, CloudError> {
        let probe = url_of(vault, &["keys"], &self.api_version);
        let started = std::time::Instant::now();
        let mut attempt = 0u32;
        loop {
            let (wait, why) = match self.http.get(probe.clone()).send().await {
                Ok(resp) => {
                    let header = resp
                        .headers()
                        .get(reqwest::header::WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .filter(|h| h.trim_start().starts_with("Bearer"))
                        .map(str::to_string);
                    if let Some(header) = header {
                        return Ok(header);
                    }
                    let status = resp.status();
                    let wait = super::arm::retry_after(resp.headers());
                    if !(status.as_u16() == 429 || status.is_server_error() || status.as_u16() == 404) {
                        return Err(CloudError::Unavailable(format!(
                            "{vault} did not answer with a bearer challenge ({status})"
                        )));
                    }
                    (wait, status.as_u16().to_string())
                }
                Err(e) => (None, format!("connection failed: {e}")),
            };
            super::wire::record_retry(&format!("challenge {why}"));
            attempt += 1;
            let delay = self.policy.delay(attempt, wait);
            if attempt >= self.policy.max_attempts || started.elapsed() + delay > self.policy.deadline {
                return Err(CloudError::Unavailable(format!(
                    "{vault} gave no bearer challenge after {attempt} attempts: {why}"
                )));
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// Waits until `vault`'s data plane answers (its challenge), e.g. right after its creation.
    pub async fn wait_until_answering(&self, vault: &Url) -> Result<(), CloudError> {
        self.client_for(vault).await.map(drop)
    }

    /// One data-plane call on `vault` (from [`KeyVaultClient::vault_url`]) at `segments`
    /// (each already checked by [`crate::names`]), with the client's retries.
    pub async fn call(
        &self,
        method: Method,
        vault: &Url,
        segments: &[&str],
        body: Option<&Value>,
    ) -> Result<ArmResponse, CloudError> {
        self.send(method, vault, segments, body, false).await
    }

    /// One attempt of a call that is not idempotent (see [`ArmClient::send_once`]).
    pub async fn call_once(
        &self,
        method: Method,
        vault: &Url,
        segments: &[&str],
        body: Option<&Value>,
    ) -> Result<ArmResponse, CloudError> {
        self.send(method, vault, segments, body, true).await
    }

    async fn send(
        &self,
        method: Method,
        vault: &Url,
        segments: &[&str],
        body: Option<&Value>,
        once: bool,
    ) -> Result<ArmResponse, CloudError> {
        let client = self.client_for(vault).await?;
        let url = url_of(vault, segments, &self.api_version);
        if once {
            client.send_once(method, url, body, &[]).await
        } else {
            client.send(method, url, body, &[]).await
        }
    }

    /// Follows `nextLink`s from a list call, only on the vault's own host.
    pub async fn list(&self, vault: &Url, segments: &[&str]) -> Result<Vec<Value>, CloudError> {
        let mut out = Vec::new();
        let mut page = self.call(Method::GET, vault, segments, None).await?.body;
        loop {
            out.extend(page["value"].as_array().cloned().unwrap_or_default());
            match page["nextLink"].as_str().filter(|n| !n.is_empty()) {
                Some(next) => {
                    let next = Url::parse(next).map_err(|e| CloudError::Invalid(format!("nextLink: {e}")))?;
                    if next.origin() != vault.origin() {
                        return Err(CloudError::Invalid(format!(
                            "the vault linked to {}; refusing to follow",
                            next.origin().ascii_serialization()
                        )));
                    }
                    let client = self.client_for(vault).await?;
                    page = client.send(Method::GET, next, None, &[]).await?.body;
                }
                None => return Ok(out),
            }
        }
    }
}

/// `vault` with its path replaced by `segments` (encoded one by one) and the api-version.
fn url_of(vault: &Url, segments: &[&str], api_version: &str) -> Url {
    let mut url = vault.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.clear().extend(segments);
    }
    url.set_query(None);
    url.query_pairs_mut().append_pair("api-version", api_version);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_as_sdks_do() {
        let p = challenge_params(
            "Bearer authorization=\"https://login.windows.net/t1\", resource=\"https://vault.azure.net\"",
        );
        assert_eq!(p["authorization"], "https://login.windows.net/t1");
        assert_eq!(p["resource"], "https://vault.azure.net");
        assert_eq!(host_of("https://kv1.vault.azure.net:8443/keys"), "kv1.vault.azure.net");
    }

    #[test]
    fn vault_urls_must_name_the_vault_on_the_clouds_host() {
        let kv = KeyVaultClient::new(reqwest::Client::new(), Arc::new(NoCredential), RetryPolicy::default())
            .with_dns_suffix("vault.azure.net");
        assert!(kv.vault_url("https://kv1.vault.azure.net/", "kv1").is_ok());
        for bad in [
            "https://kv2.vault.azure.net/",
            "http://kv1.vault.azure.net/",
            "https://kv1.vault.azure.net.evil.example/",
            "https://user@kv1.vault.azure.net/",
            "https://kv1.vault.azure.net/keys/",
            "https://kv1.vault.azure.net/?x=1",
        ] {
            assert!(kv.vault_url(bad, "kv1").is_err(), "{bad}");
        }
        let base = kv.vault_url("https://kv1.vault.azure.net/", "kv1").unwrap();
        assert_eq!(
            url_of(&base, &["keys", "k1", "create"], DEFAULT_API_VERSION).as_str(),
            "https://kv1.vault.azure.net/keys/k1/create?api-version=7.5"
        );
    }

    #[derive(Debug)]
    struct NoCredential;

    #[async_trait::async_trait]
    impl TokenCredential for NoCredential {
        async fn get_token(
            &self,
            _scopes: &[&str],
            _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
        ) -> azure_core::Result<azure_core::credentials::AccessToken> {
            Err(azure_core::Error::new(azure_core::error::ErrorKind::Credential, "none"))
        }
    }
}
