//! Each cluster's Kubernetes API server and its encryption at rest, observed in the database
//! file itself and through inspection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::{public_kms, start, Cloud};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use reqwest::{Method, StatusCode};
use rsa::pkcs8::DecodePrivateKey;
use serde_json::{json, Value};
use sha2::Digest;

/// Reads a protobuf varint.
fn varint(bytes: &[u8], at: &mut usize) -> u64 {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let b = bytes[*at];
        *at += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return value;
        }
        shift += 7;
    }
}

/// An independent decoder of the KMS v2 `EncryptedObject`: fields 1 (data), 2 (keyID), 3 (DEK source).
fn encrypted_object(bytes: &[u8]) -> (Vec<u8>, String, Vec<u8>) {
    let (mut data, mut key_id, mut source) = (Vec::new(), String::new(), Vec::new());
    let mut at = 0;
    while at < bytes.len() {
        let tag = varint(bytes, &mut at);
        match tag & 7 {
            0 => {
                varint(bytes, &mut at);
            }
            2 => {
                let len = varint(bytes, &mut at) as usize;
                let field = bytes[at..at + len].to_vec();
                at += len;
                match tag >> 3 {
                    1 => data = field,
                    2 => key_id = String::from_utf8(field).unwrap(),
                    3 => source = field,
                    _ => {}
                }
            }
            other => panic!("unexpected wire type {other}"),
        }
    }
    (data, key_id, source)
}

/// Decrypts a KMS v2 value with the exported private key, independently of the local cloud's code.
async fn open_v2(c: &Cloud, raw: &[u8], etcd_key: &str, vault: &str, key_id: &str) -> Value {
    let prefix_end = raw.iter().enumerate().filter(|(_, b)| **b == b':').nth(4).unwrap().0 + 1;
    let (data, kid_hash, source) = encrypted_object(&raw[prefix_end..]);
    assert_eq!(
        kid_hash,
        hex::encode(sha2::Sha256::digest(key_id.as_bytes())),
        "keyID is the SHA-256 of the versioned key URL"
    );
    let version = key_id.rsplit('/').next().unwrap();
    let (_, admin) = c
        .admin(
            Method::GET,
            &format!("/_admin/keys/{vault}/etcd/{version}/private"),
            None,
        )
        .await;
    let private =
        rsa::RsaPrivateKey::from_pkcs8_der(&STANDARD.decode(admin["pkcs8_der"].as_str().unwrap()).unwrap()).unwrap();
    let seed = private
        .decrypt(
            rsa::Oaep::new::<sha2::Sha256>(),
            &URL_SAFE_NO_PAD.decode(&source).unwrap(),
        )
        .unwrap();
    let (info, rest) = data.split_at(32);
    let mut dek = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(None, &seed)
        .expand(info, &mut dek)
        .unwrap();
    let (nonce, sealed) = rest.split_at(12);
    let plain = aes_gcm::Aes256Gcm::new_from_slice(&dek)
        .unwrap()
        .decrypt(
            aes_gcm::Nonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: etcd_key.as_bytes(),
            },
        )
        .unwrap();
    serde_json::from_slice(&plain).unwrap()
}

fn summary(inspect: &Value) -> (u64, u64, u64) {
    let s = &inspect["summary"];
    (
        s["current"].as_u64().unwrap(),
        s["stale"].as_u64().unwrap(),
        s["plain"].as_u64().unwrap(),
    )
}

async fn rotate(c: &Cloud, vault: &str) -> String {
    let (status, key) = c.kv(Method::POST, vault, "/keys/etcd/rotate", None).await;
    assert_eq!(status, StatusCode::OK, "{key}");
    key["key"]["kid"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn secrets_are_kms_v2_at_rest_then_plain_after_disable_then_under_the_new_key() {
    let c = start().await;
    let s = c.kms_setup("kv-rest1").await;
    c.operator_policy(&s.vault, &["rotate"]).await;
    let kube = c.kms_cluster(&s, "aks1", "1.30", Some(public_kms(&s.key_id))).await;
    let (status, created) = kube.create_secret("default", "db", "super-secret-value").await;
    assert_eq!(status, StatusCode::CREATED, "{created}");

    let raw = c.raw("aks1", "/registry/secrets/default/db");
    assert!(
        raw.starts_with(b"k8s:enc:kms:v2:"),
        "{}",
        String::from_utf8_lossy(&raw[..30])
    );
    assert!(!raw.windows(18).any(|w| w == b"super-secret-value"));
    assert!(!raw
        .windows(24)
        .any(|w| w == STANDARD.encode("super-secret-value").as_bytes()));
    let decoded = open_v2(&c, &raw, "/registry/secrets/default/db", "kv-rest1", &s.key_id).await;
    assert_eq!(decoded["data"]["v"], STANDARD.encode("super-secret-value"));

    let (status, read) = kube
        .request(Method::GET, "/api/v1/namespaces/default/secrets/db", None)
        .await;
    assert_eq!(
        (status, &read["data"]["v"]),
        (StatusCode::OK, &json!(STANDARD.encode("super-secret-value")))
    );

    let mut disabled = public_kms(&s.key_id);
    disabled["enabled"] = json!(false);
    c.set_kms("aks1", disabled).await;
    assert_eq!(summary(&c.inspect("aks1").await), (0, 1, 0), "stale until rewritten");
    assert_eq!(kube.rewrite_all().await, 1);
    let raw = c.raw("aks1", "/registry/secrets/default/db");
    assert_eq!(raw[0], b'{', "plain JSON after disable + rewrite");
    assert_eq!(summary(&c.inspect("aks1").await), (1, 0, 1));

    let rotated = rotate(&c, "kv-rest1").await;
    c.set_kms("aks1", public_kms(&rotated)).await;
    kube.rewrite_all().await;
    let raw = c.raw("aks1", "/registry/secrets/default/db");
    let decoded = open_v2(&c, &raw, "/registry/secrets/default/db", "kv-rest1", &rotated).await;
    assert_eq!(decoded["metadata"]["name"], "db");
    let inspected = c.inspect("aks1").await;
    assert_eq!(
        inspected["secrets"][0]["key_version"],
        rotated.rsplit('/').next().unwrap()
    );
    assert_eq!(summary(&inspected), (1, 0, 0));
}

#[tokio::test]
async fn a_second_rotation_before_the_rewrite_fails_the_cluster_and_loses_the_oldest_key() {
    let c = start().await;
    let s = c.kms_setup("kv-twokey1").await;
    c.operator_policy(&s.vault, &["rotate"]).await;
    let kube = c.kms_cluster(&s, "aks1", "1.30", Some(public_kms(&s.key_id))).await;
    c.seed_secrets("aks1", 5, 2).await;

    // With a rewrite between rotations, both succeed.
    let second = rotate(&c, "kv-twokey1").await;
    assert_eq!(
        c.set_kms("aks1", public_kms(&second)).await["properties"]["provisioningState"],
        "Succeeded"
    );
    kube.rewrite_all().await;
    let third = rotate(&c, "kv-twokey1").await;
    assert_eq!(
        c.set_kms("aks1", public_kms(&third)).await["properties"]["provisioningState"],
        "Succeeded"
    );
    assert_eq!(summary(&c.inspect("aks1").await), (0, 5, 0));

    // Without one, the next key change fails and the oldest-key secrets become unreadable.
    let fourth = rotate(&c, "kv-twokey1").await;
    let doc = c.set_kms("aks1", public_kms(&fourth)).await;
    assert_eq!(doc["properties"]["provisioningState"], "Failed");
    let (status, err) = kube.request(Method::GET, "/api/v1/secrets", None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        err["message"].as_str().unwrap().contains("no matching prefix found"),
        "{err}"
    );
}

#[tokio::test]
async fn a_no_op_rewrite_touches_only_stale_secrets() {
    let c = start().await;
    let s = c.kms_setup("kv-stale1").await;
    c.operator_policy(&s.vault, &["rotate"]).await;
    let kube = c.kms_cluster(&s, "aks1", "1.30", Some(public_kms(&s.key_id))).await;
    for name in ["old-a", "old-b", "old-c"] {
        kube.create_secret("default", name, name).await;
    }
    let rotated = rotate(&c, "kv-stale1").await;
    c.set_kms("aks1", public_kms(&rotated)).await;
    for name in ["new-a", "new-b"] {
        kube.create_secret("default", name, name).await;
    }
    let before = c.inspect("aks1").await;
    assert_eq!(summary(&before), (2, 3, 0));
    kube.rewrite_all().await;
    let after = c.inspect("aks1").await;
    assert_eq!(summary(&after), (5, 0, 0));
    let rv = |doc: &Value, name: &str| {
        doc["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()["resource_version"]
            .clone()
    };
    for name in ["new-a", "new-b"] {
        assert_eq!(
            rv(&before, name),
            rv(&after, name),
            "{name} was current and must not be rewritten"
        );
    }
    for name in ["old-a", "old-b", "old-c"] {
        assert_ne!(
            rv(&before, name),
            rv(&after, name),
            "{name} was stale and must be rewritten"
        );
    }
    // A stale precondition is a conflict.
    let (status, _) = kube.touch("default", "new-a", "1").await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_disabled_key_fails_writes_and_uncached_reads() {
    let c = start().await;
    let s = c.kms_setup("kv-off1").await;
    c.operator_policy(&s.vault, &["update"]).await;
    let kube = c.kms_cluster(&s, "aks1", "1.30", Some(public_kms(&s.key_id))).await;
    kube.create_secret("default", "before", "x").await;
    let version = s.key_id.rsplit('/').next().unwrap();
    let (status, _) = c
        .kv(
            Method::PATCH,
            "kv-off1",
            &format!("/keys/etcd/{version}"),
            Some(json!({"attributes": {"enabled": false}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    c.restart_apiserver("aks1").await;
    let (status, err) = kube.create_secret("default", "after", "y").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(err["message"].as_str().unwrap().contains("KeyDisabled"), "{err}");
    let (status, err) = kube
        .request(Method::GET, "/api/v1/namespaces/default/secrets/before", None)
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{err}");
}

#[tokio::test]
async fn a_removed_permission_fails_writes_and_uncached_reads_but_cached_reads_continue() {
    let c = start().await;
    let s = c.kms_setup("kv-perm1").await;
    let kube = c.kms_cluster(&s, "aks1", "1.30", Some(public_kms(&s.key_id))).await;
    kube.create_secret("default", "before", "x").await;
    let body = json!({"properties": {"accessPolicies": [{"tenantId": c.profile.tenant_id, "objectId": s.principal, "permissions": {"keys": ["encrypt", "decrypt"]}}]}});
    let (status, _) = c
        .arm(Method::PUT, &format!("{}/accessPolicies/remove", s.vault), Some(body))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = kube
        .request(Method::GET, "/api/v1/namespaces/default/secrets/before", None)
        .await;
    assert_eq!(status, StatusCode::OK, "the data key is still cached");
    c.restart_apiserver("aks1").await;
    let (status, err) = kube.create_secret("default", "after", "y").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(err["message"].as_str().unwrap().contains("ForbiddenByPolicy"), "{err}");
    let (status, _) = kube
        .request(Method::GET, "/api/v1/namespaces/default/secrets/before", None)
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn kms_v1_stores_rsa1_5_envelopes_and_refuses_the_2001st_secret() {
    let c = start().await;
    let s = c.kms_setup("kv-v1").await;
    let kube = c.kms_cluster(&s, "aks1", "1.26", Some(public_kms(&s.key_id))).await;
    c.seed_secrets("aks1", 2000, 4).await;
    let inspected = c.inspect("aks1").await;
    assert_eq!(inspected["kms_version"], "v1");
    assert_eq!(summary(&inspected), (2000, 0, 0));
    assert_eq!(inspected["secrets"][0]["at_rest"], "kms-v1");
    let raw = c.raw("aks1", "/registry/secrets/seed-0/secret-000000");
    assert!(raw.starts_with(b"k8s:enc:kms:v1:"));
    let (status, err) = kube.create_secret("default", "one-too-many", "x").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert!(err["message"].as_str().unwrap().contains("at most 2000 secrets"));
}

#[tokio::test]
async fn paging_and_metadata_only_lists() {
    let c = start().await;
    let s = c.kms_setup("kv-page1").await;
    let kube = c.kms_cluster(&s, "aks1", "1.30", Some(public_kms(&s.key_id))).await;
    c.seed_secrets("aks1", 25, 3).await;
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let url = format!("{}/api/v1/secrets?limit=10&continue={token}", kube.server);
        let resp = kube
            .http
            .get(url)
            .header(
                "accept",
                "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
            )
            .send()
            .await
            .unwrap();
        let page: Value = resp.json().await.unwrap();
        assert_eq!(page["kind"], "PartialObjectMetadataList");
        for item in page["items"].as_array().unwrap() {
            assert!(item.get("data").is_none(), "metadata only");
            names.push(item["metadata"]["name"].as_str().unwrap().to_string());
        }
        match page["metadata"]["continue"].as_str() {
            Some(t) => token = t.to_string(),
            None => break,
        }
    }
    assert_eq!(names.len(), 25);
    let (status, pods) = kube
        .request(
            Method::GET,
            "/api/v1/namespaces/kube-system/pods?labelSelector=app%3Dkonnectivity-agent",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        pods["items"].as_array().unwrap().len(),
        0,
        "a VNet-integrated cluster has no Konnectivity agents"
    );
}

#[tokio::test]
async fn openapi_v2_is_served_as_a_protobuf_document() {
    let c = start().await;
    let s = c.kms_setup("kv-oapi1").await;
    let kube = c.kms_cluster(&s, "aks1", "1.30", None).await;
    let resp = kube
        .http
        .get(format!("{}/openapi/v2?timeout=32s", kube.server))
        .header("accept", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    );
    let body = resp.bytes().await.unwrap();
    // Field 1 (swagger) is the string "2.0".
    assert_eq!(&body[..5], b"\x0a\x032.0", "{}", hex::encode(&body));
}
