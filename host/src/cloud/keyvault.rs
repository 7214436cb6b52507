//! The Key Vault data plane: the bearer-challenge flow (the first request goes without a token;
//! the 401's `WWW-Authenticate` names the authority and resource, which must be the vault host's
//! own suffix), then keys with the ARM client's retries, against absolute vault URLs.

use super::arm::{ArmClient, ArmResponse, CloudError, RetryPolicy};
use azure_core::credentials::TokenCredential;
use reqwest::Method;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A data-plane client for every vault of one cloud and credential.
pub struct KeyVaultClient {
    http: reqwest::Client,
    credential: Arc<dyn TokenCredential>,
    policy: RetryPolicy,
    /// Per resource (`https://vault.azure.net`): the client that holds tokens for it.
    clients: Mutex<HashMap<String, ArmClient>>,
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
        }
    }

    /// The client for `vault_uri`, discovering its token resource through the challenge.
    async fn client(&self, vault_uri: &str) -> Result<ArmClient, CloudError> {
        let probe = format!("{}/keys?api-version=7.5", vault_uri.trim_end_matches('/'));
        let resp = self
            .http
            .get(&probe)
            .send()
            .await
            .map_err(|e| CloudError::Unavailable(format!("{probe}: {e}")))?;
        let header = resp
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| {
                CloudError::Unavailable(format!(
                    "{vault_uri} did not answer with a bearer challenge ({})",
                    resp.status()
                ))
            })?;
        let params = challenge_params(&header);
        let resource = params
            .get("resource")
            .or_else(|| params.get("scope"))
            .cloned()
            .ok_or_else(|| CloudError::Auth(format!("the challenge of {vault_uri} names no resource")))?;
        let resource_host = host_of(&resource);
        if !host_of(vault_uri).ends_with(&format!(".{resource_host}")) {
            return Err(CloudError::Auth(format!(
                "the challenge resource {resource} does not match the vault host {}",
                host_of(vault_uri)
            )));
        }
        let scope = format!(
            "{}/.default",
            resource.trim_end_matches("/.default").trim_end_matches('/')
        );
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let client = clients
            .entry(scope.clone())
            .or_insert_with(|| ArmClient::new(self.http.clone(), "", &scope, Arc::clone(&self.credential), self.policy))
            .clone();
        Ok(client)
    }

    /// One data-plane call on `{vault_uri}{path}` (api-version 7.5).
    pub async fn call(
        &self,
        method: Method,
        vault_uri: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<ArmResponse, CloudError> {
        let client = {
            let cached = self
                .clients
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .next()
                .cloned();
            match cached {
                Some(c) => c,
                None => self.client(vault_uri).await?,
            }
        };
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = format!("{}{path}{sep}api-version=7.5", vault_uri.trim_end_matches('/'));
        client.send(method, &url, body, &[]).await
    }

    /// Follows `nextLink`s from a list call.
    pub async fn list(&self, vault_uri: &str, path: &str) -> Result<Vec<Value>, CloudError> {
        let mut out = Vec::new();
        let mut page = self.call(Method::GET, vault_uri, path, None).await?.body;
        loop {
            out.extend(page["value"].as_array().cloned().unwrap_or_default());
            match page["nextLink"].as_str().filter(|n| !n.is_empty()) {
                Some(next) => {
                    let client = self.client(vault_uri).await?;
                    page = client.send(Method::GET, next, None, &[]).await?.body;
                }
                None => return Ok(out),
            }
        }
    }
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
}
