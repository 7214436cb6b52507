//! Vault creation as a long-running operation: `RegisteringDns` then `Succeeded` after the
//! configured delay, and a data-plane host that does not answer (no HTTP at all) before then.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::{start, Cloud};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn vault_body(c: &Cloud) -> Value {
    json!({"location": "westeurope", "properties": {
        "tenantId": c.profile.tenant_id, "sku": {"family": "A", "name": "standard"}, "accessPolicies": []}})
}

fn vault_id(c: &Cloud, name: &str) -> String {
    format!("{}/providers/Microsoft.KeyVault/vaults/{name}", c.rg_id("rg1"))
}

/// An unauthenticated `GET /keys` on the vault's host: `Ok(status)` if it answered at all.
async fn probe(c: &Cloud, vault: &str) -> Result<StatusCode, reqwest::Error> {
    let url = format!(
        "https://{vault}.{}:{}/keys?api-version=7.5",
        c.profile.keyvault_dns_suffix,
        c.port()
    );
    c.http.get(url).send().await.map(|r| r.status())
}

async fn provisioning_state(c: &Cloud, vault: &str) -> String {
    let (st, _, doc) = c.arm_raw(Method::GET, &vault_id(c, vault), None, &[]).await;
    assert_eq!(st, StatusCode::OK, "{doc}");
    doc["properties"]["provisioningState"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_new_vault_registers_dns_before_its_data_plane_answers() {
    let c = start().await;
    c.resource_group("rg1").await;
    let s = c.settings(json!({"vault_provisioning_ms": 1500})).await;
    assert_eq!(s["vault_provisioning_ms"], 1500);

    let started = Instant::now();
    let (st, h, created) = c
        .arm_raw(Method::PUT, &vault_id(&c, "kv-dns1"), Some(vault_body(&c)), &[])
        .await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    assert_eq!(created["properties"]["provisioningState"], "RegisteringDns");
    assert!(h.contains_key("retry-after"), "a long-running create says when to poll");
    assert!(
        created["properties"].get("kmsflowDnsReadyAtMs").is_none(),
        "no private field leaks: {created}"
    );

    let err = probe(&c, "kv-dns1")
        .await
        .expect_err("no HTTP answer while RegisteringDns");
    assert!(
        err.is_connect(),
        "a connection-level failure, as for a name that does not resolve: {err:?}"
    );
    assert_eq!(provisioning_state(&c, "kv-dns1").await, "RegisteringDns");

    let mut state = String::new();
    for _ in 0..100 {
        state = provisioning_state(&c, "kv-dns1").await;
        if state != "RegisteringDns" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, "Succeeded");
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "not before the delay: {:?}",
        started.elapsed()
    );
    assert_eq!(
        probe(&c, "kv-dns1").await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "the host answers now (with the bearer challenge)"
    );
    c.operator_policy(&vault_id(&c, "kv-dns1"), &["create", "get"]).await;
    let kid = c.key("kv-dns1", "k1", "RSA").await;
    assert!(kid.contains("kv-dns1.vault.localhost"), "{kid}");
}

#[tokio::test]
async fn updates_of_a_registered_vault_and_the_in_process_default_are_immediate() {
    let c = start().await;
    c.resource_group("rg1").await;
    let (st, _, created) = c
        .arm_raw(Method::PUT, &vault_id(&c, "kv-now1"), Some(vault_body(&c)), &[])
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(
        created["properties"]["provisioningState"], "Succeeded",
        "Config::new provisions at once"
    );
    c.settings(json!({"vault_provisioning_ms": 60_000})).await;
    let (st, _, updated) = c
        .arm_raw(Method::PUT, &vault_id(&c, "kv-now1"), Some(vault_body(&c)), &[])
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(updated["properties"]["provisioningState"], "Succeeded");
    assert_eq!(probe(&c, "kv-now1").await.unwrap(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_hang_keeps_a_vault_registering_dns() {
    let c = start().await;
    c.resource_group("rg1").await;
    c.settings(json!({"vault_provisioning_ms": 100})).await;
    let (status, body) = c
        .admin(
            Method::PUT,
            "/_admin/operations/hang",
            Some(json!({"resource": vault_id(&c, "kv-hang1"), "hang_s": 300})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    c.arm_raw(Method::PUT, &vault_id(&c, "kv-hang1"), Some(vault_body(&c)), &[])
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(provisioning_state(&c, "kv-hang1").await, "RegisteringDns");
    assert!(probe(&c, "kv-hang1").await.is_err());

    c.admin(
        Method::PUT,
        "/_admin/operations/hang",
        Some(json!({"resource": vault_id(&c, "kv-hang1"), "hang_s": 0})),
    )
    .await;
    assert_eq!(provisioning_state(&c, "kv-hang1").await, "Succeeded");
    assert!(probe(&c, "kv-hang1").await.is_ok());
}
