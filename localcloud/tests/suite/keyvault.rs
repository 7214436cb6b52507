//! The Key Vault data plane: the challenge, permissions by access policy and by RBAC, network
//! rules, key attributes, and real RSA checked with an independent decryption.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::{start, Cloud};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use base64::Engine;
use reqwest::{Method, StatusCode};
use rsa::pkcs8::DecodePrivateKey;
use serde_json::{json, Value};

const ALL_KEY_OPS: [&str; 8] = [
    "create",
    "get",
    "list",
    "update",
    "rotate",
    "encrypt",
    "decrypt",
    "unwrapKey",
];

async fn vault_with_key(c: &Cloud, name: &str) -> (String, String) {
    c.resource_group("rg1").await;
    let vault = c.vault("rg1", name, false, json!({})).await;
    c.operator_policy(&vault, &ALL_KEY_OPS).await;
    let (status, key) = c
        .kv(
            Method::POST,
            name,
            "/keys/etcd/create",
            Some(json!({"kty": "RSA", "key_size": 2048})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{key}");
    (vault, key["key"]["kid"].as_str().unwrap().to_string())
}

fn version_of(kid: &str) -> &str {
    kid.rsplit('/').next().unwrap()
}

async fn encrypt(c: &Cloud, vault: &str, version: &str, alg: &str, plain: &[u8]) -> (StatusCode, Value) {
    c.kv(
        Method::POST,
        vault,
        &format!("/keys/etcd/{version}/encrypt"),
        Some(json!({"alg": alg, "value": B64.encode(plain)})),
    )
    .await
}

async fn decrypt(c: &Cloud, vault: &str, version: &str, alg: &str, cipher: &str) -> (StatusCode, Value) {
    c.kv(
        Method::POST,
        vault,
        &format!("/keys/etcd/{version}/decrypt"),
        Some(json!({"alg": alg, "value": cipher})),
    )
    .await
}

#[tokio::test]
async fn encryption_round_trips_and_an_independent_rsa_decrypts_the_ciphertext() {
    let c = start().await;
    let (_, kid) = vault_with_key(&c, "kv-crypto1").await;
    let expected_kid = format!("https://kv-crypto1.vault.localhost:{}/keys/etcd/", c.port());
    assert!(kid.starts_with(&expected_kid), "{kid}");
    let version = version_of(&kid);
    assert_eq!(version.len(), 32);
    assert!(version.bytes().all(|b| b.is_ascii_hexdigit()));

    let (_, admin) = c
        .admin(
            Method::GET,
            &format!("/_admin/keys/kv-crypto1/etcd/{version}/private"),
            None,
        )
        .await;
    let der = STANDARD.decode(admin["pkcs8_der"].as_str().unwrap()).unwrap();
    let private = rsa::RsaPrivateKey::from_pkcs8_der(&der).unwrap();

    for (alg, local) in [("RSA-OAEP-256", true), ("RSA1_5", false)] {
        let plain = b"a 32-byte data encryption key!!!";
        let (status, enc) = encrypt(&c, "kv-crypto1", version, alg, plain).await;
        assert_eq!(status, StatusCode::OK, "{enc}");
        assert_eq!(enc["kid"], kid.as_str());
        let cipher = enc["value"].as_str().unwrap();
        assert!(
            !cipher.contains('=') && !cipher.contains('+') && !cipher.contains('/'),
            "base64url without padding"
        );
        let bytes = B64.decode(cipher).unwrap();
        assert_eq!(bytes.len(), 256);
        let decrypted = if local {
            private.decrypt(rsa::Oaep::new::<sha2::Sha256>(), &bytes).unwrap()
        } else {
            private.decrypt(rsa::Pkcs1v15Encrypt, &bytes).unwrap()
        };
        assert_eq!(decrypted, plain);
        let (status, dec) = decrypt(&c, "kv-crypto1", version, alg, cipher).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(B64.decode(dec["value"].as_str().unwrap()).unwrap(), plain);
    }
}

#[tokio::test]
async fn an_unauthenticated_request_gets_the_bearer_challenge() {
    let c = start().await;
    vault_with_key(&c, "kv-chal1").await;
    let ((status, body), headers) = c.kv_with(None, Method::GET, "kv-chal1", "/keys/etcd", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "Unauthorized");
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with(&format!(
            "Bearer authorization=\"https://localhost:{}/{}\"",
            c.port(),
            c.profile.tenant_id
        )),
        "{challenge}"
    );
    assert!(challenge.contains("resource=\"https://vault.localhost\""));
}

#[tokio::test]
async fn access_policies_grant_exactly_their_permissions() {
    let c = start().await;
    c.resource_group("rg1").await;
    let vault = c.vault("rg1", "kv-policy1", false, json!({})).await;
    let (status, err) = c
        .kv(
            Method::POST,
            "kv-policy1",
            "/keys/etcd/create",
            Some(json!({"kty": "RSA"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(err["error"]["innererror"]["code"], "ForbiddenByPolicy");
    c.operator_policy(&vault, &["create"]).await;
    let (status, key) = c
        .kv(
            Method::POST,
            "kv-policy1",
            "/keys/etcd/create",
            Some(json!({"kty": "RSA"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let version = version_of(key["key"]["kid"].as_str().unwrap()).to_string();
    let (status, err) = encrypt(&c, "kv-policy1", &version, "RSA-OAEP-256", b"x").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("does not have keys encrypt permission"));

    // remove takes away only what it lists.
    c.operator_policy(&vault, &["get", "encrypt"]).await;
    let body = json!({"properties": {"accessPolicies": [{"tenantId": c.profile.tenant_id, "objectId": c.profile.operator.object_id, "permissions": {"keys": ["encrypt"]}}]}});
    let (status, _) = c
        .arm(Method::PUT, &format!("{vault}/accessPolicies/remove"), Some(body))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = encrypt(&c, "kv-policy1", &version, "RSA-OAEP-256", b"x").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = c.kv(Method::GET, "kv-policy1", "/keys/etcd", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn rbac_vaults_authorise_by_role() {
    let c = start().await;
    c.resource_group("rg1").await;
    let vault = c.vault("rg1", "kv-rbac1", true, json!({})).await;
    // An access policy means nothing on an RBAC vault.
    c.operator_policy(&vault, &["create"]).await;
    let (status, err) = c
        .kv(
            Method::POST,
            "kv-rbac1",
            "/keys/etcd/create",
            Some(json!({"kty": "RSA"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(err["error"]["innererror"]["code"], "ForbiddenByRbac");

    let assign = |role: &str, name: &str| {
        let body = json!({"properties": {
            "roleDefinitionId": format!("/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{role}", c.sub()),
            "principalId": c.profile.operator.object_id, "principalType": "ServicePrincipal"}});
        (
            format!("{vault}/providers/Microsoft.Authorization/roleAssignments/{name}"),
            body,
        )
    };
    let (path, body) = assign(
        "12338af0-0e69-4776-bea7-57ae8d297424",
        "0b0b0b0b-0000-4000-8000-000000000001",
    );
    assert_eq!(c.arm(Method::PUT, &path, Some(body)).await.0, StatusCode::CREATED);
    let (status, _) = c
        .kv(
            Method::POST,
            "kv-rbac1",
            "/keys/etcd/create",
            Some(json!({"kty": "RSA"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "Crypto User cannot create keys");

    let (path, body) = assign(
        "14b46e9e-c2b7-41b4-b07b-48a6ebf60603",
        "0b0b0b0b-0000-4000-8000-000000000002",
    );
    assert_eq!(c.arm(Method::PUT, &path, Some(body)).await.0, StatusCode::CREATED);
    let (status, key) = c
        .kv(
            Method::POST,
            "kv-rbac1",
            "/keys/etcd/create",
            Some(json!({"kty": "RSA"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "Crypto Officer creates keys: {key}");
}

#[tokio::test]
async fn network_rules_block_public_callers() {
    let c = start().await;
    let (vault, kid) = vault_with_key(&c, "kv-net1").await;
    let version = version_of(&kid).to_string();

    let (status, _) = c
        .arm(
            Method::PATCH,
            &vault,
            Some(json!({"properties": {"networkAcls": {"defaultAction": "Deny", "bypass": "AzureServices"}}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, err) = encrypt(&c, "kv-net1", &version, "RSA-OAEP-256", b"x").await;
    assert_eq!(
        (status, err["error"]["innererror"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("ForbiddenByFirewall"))
    );

    let (status, _) = c
        .arm(
            Method::PATCH,
            &vault,
            Some(
                json!({"properties": {"networkAcls": {"defaultAction": "Deny", "ipRules": [{"value": "127.0.0.1"}]}}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        encrypt(&c, "kv-net1", &version, "RSA-OAEP-256", b"x").await.0,
        StatusCode::OK,
        "an allowed address passes the firewall"
    );

    let (status, _) = c
        .arm(
            Method::PATCH,
            &vault,
            Some(json!({"properties": {"publicNetworkAccess": "Disabled"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, err) = c.kv(Method::GET, "kv-net1", "/keys/etcd", None).await;
    assert_eq!(
        (status, err["error"]["innererror"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("ForbiddenByConnection"))
    );
}

#[tokio::test]
async fn disabled_keys_refuse_both_and_expired_keys_still_decrypt() {
    let c = start().await;
    let (_, kid) = vault_with_key(&c, "kv-attr1").await;
    let version = version_of(&kid).to_string();
    let (_, enc) = encrypt(&c, "kv-attr1", &version, "RSA-OAEP-256", b"dek").await;
    let cipher = enc["value"].as_str().unwrap().to_string();

    let past = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 60;
    let (status, _) = c
        .kv(
            Method::PATCH,
            "kv-attr1",
            &format!("/keys/etcd/{version}"),
            Some(json!({"attributes": {"exp": past}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, err) = encrypt(&c, "kv-attr1", &version, "RSA-OAEP-256", b"dek").await;
    assert_eq!(
        (status, err["error"]["innererror"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("KeyExpired"))
    );
    assert_eq!(
        decrypt(&c, "kv-attr1", &version, "RSA-OAEP-256", &cipher).await.0,
        StatusCode::OK,
        "expired keys still decrypt"
    );

    let (status, _) = c
        .kv(
            Method::PATCH,
            "kv-attr1",
            &format!("/keys/etcd/{version}"),
            Some(json!({"attributes": {"enabled": false}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, err) = decrypt(&c, "kv-attr1", &version, "RSA-OAEP-256", &cipher).await;
    assert_eq!(
        (status, err["error"]["innererror"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("KeyDisabled"))
    );
}

#[tokio::test]
async fn rotate_makes_a_new_version_and_versions_lists_them_all() {
    let c = start().await;
    let (_, first) = vault_with_key(&c, "kv-rot1").await;
    let (status, rotated) = c.kv(Method::POST, "kv-rot1", "/keys/etcd/rotate", None).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let second = rotated["key"]["kid"].as_str().unwrap();
    assert_ne!(second, first);
    let (status, latest) = c.kv(Method::GET, "kv-rot1", "/keys/etcd", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(latest["key"]["kid"], second);
    let (_, versions) = c.kv(Method::GET, "kv-rot1", "/keys/etcd/versions", None).await;
    let kids: Vec<&str> = versions["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, vec![first.as_str(), second]);
    let (status, err) = c.kv(Method::GET, "kv-rot1", "/keys/missing", None).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("KeyNotFound"))
    );
}

#[tokio::test]
async fn state_survives_a_restart() {
    let mut c = start().await;
    let (_, kid) = vault_with_key(&c, "kv-restart1").await;
    let version = version_of(&kid).to_string();
    let (_, enc) = encrypt(&c, "kv-restart1", &version, "RSA-OAEP-256", b"persist me").await;
    let cipher = enc["value"].as_str().unwrap().to_string();
    let port = c.port();
    c.cloud.take().unwrap().shutdown().await;

    let again = crate::common::start_in(c.dir).await;
    assert_eq!(
        again.port(),
        port,
        "the state directory keeps its port, so key ids stay valid"
    );
    let (status, dec) = decrypt(&again, "kv-restart1", &version, "RSA-OAEP-256", &cipher).await;
    assert_eq!(status, StatusCode::OK, "{dec}");
    assert_eq!(B64.decode(dec["value"].as_str().unwrap()).unwrap(), b"persist me");
}
