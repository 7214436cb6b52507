//! Cluster credentials as AKS issues them (issue 12): the admin kubeconfig carries a client
//! certificate of the cluster's own CA, which only that cluster's API server accepts, and which
//! survives a restart; clusters with Entra integration and `disableLocalAccounts` refuse the
//! admin credential and take Entra tokens for the AKS server application only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::{client_with_certificate, kubeconfig_field, kubeconfig_yaml, start, Cloud, Kube};
use kmsflow_localcloud::AKS_SERVER_APP_ID;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const NAMESPACES: &str = "/api/v1/namespaces";

async fn seed_cluster(c: &Cloud, name: &str, disable_local_accounts: bool) {
    let body = json!({"resource_group": "rg1", "name": name, "disable_local_accounts": disable_local_accounts});
    let (status, doc) = c.admin(Method::POST, "/_admin/clusters", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{doc}");
}

async fn credential(c: &Cloud, name: &str, which: &str) -> (StatusCode, Value) {
    c.arm(Method::POST, &format!("{}/{which}", c.cluster_id(name)), None)
        .await
}

/// A client of `server` presenting no certificate, sending `token` if given.
fn bare(c: &Cloud, server: &str, token: Option<&str>, cluster: &str) -> Kube {
    Kube {
        http: crate::common::http_client(&c.profile),
        server: server.to_string(),
        token: token.map(str::to_string),
        cluster_id: cluster.to_string(),
    }
}

async fn token_for(c: &Cloud, scope: &str) -> String {
    let url = format!("{}{}/oauth2/v2.0/token", c.profile.authority_host, c.profile.tenant_id);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", c.profile.operator.client_id.as_str()),
        ("client_secret", c.profile.operator.client_secret.as_str()),
        ("scope", scope),
    ];
    let resp = c.http.post(url).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_admin_kubeconfig_is_a_client_certificate_only_its_own_cluster_accepts_across_restarts() {
    let c = start().await;
    seed_cluster(&c, "aks1", false).await;
    seed_cluster(&c, "aks2", false).await;

    let (status, creds) = credential(&c, "aks1", "listClusterAdminCredential").await;
    assert_eq!(
        (status, creds["kubeconfigs"][0]["name"].as_str()),
        (StatusCode::OK, Some("clusterAdmin"))
    );
    let yaml = kubeconfig_yaml(&creds);
    assert!(kubeconfig_field(&yaml, "token:").is_none(), "no bearer token: {yaml}");
    assert!(yaml.contains("client-certificate-data:") && yaml.contains("client-key-data:"));
    let kube1 = c.kube("aks1").await;
    let (status, list) = kube1.request(Method::GET, NAMESPACES, None).await;
    assert_eq!(status, StatusCode::OK, "{list}");

    // aks2's certificate on aks1's API server: another CA, refused.
    let (_, creds2) = credential(&c, "aks2", "listClusterAdminCredential").await;
    let other = Kube {
        http: client_with_certificate(&c.profile, &kubeconfig_yaml(&creds2)),
        ..bare(&c, &kube1.server, None, &c.cluster_id("aks1"))
    };
    let (status, body) = other.request(Method::GET, NAMESPACES, None).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Unauthorized"))
    );
    assert_eq!(
        bare(&c, &kube1.server, None, "")
            .request(Method::GET, NAMESPACES, None)
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "no credential"
    );
    assert_eq!(
        bare(&c, &kube1.server, Some(&c.arm_token), "")
            .request(Method::GET, NAMESPACES, None)
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "a cluster without Entra integration takes no token"
    );
    // Without Entra integration, the user credential is a static one too.
    let (status, user) = credential(&c, "aks1", "listClusterUserCredential").await;
    assert_eq!(status, StatusCode::OK);
    let user = kubeconfig_yaml(&user);
    assert!(
        user.contains("client-certificate-data:") && !user.contains("kubelogin"),
        "{user}"
    );

    // The CA lives in the state database: after a restart the same kubeconfig still works.
    let mut c = c;
    c.cloud.take().unwrap().shutdown().await;
    let c = crate::common::start_in(c.dir).await;
    let (_, again) = credential(&c, "aks1", "listClusterAdminCredential").await;
    assert_eq!(
        kubeconfig_field(&kubeconfig_yaml(&again), "client-certificate-data:"),
        kubeconfig_field(&yaml, "client-certificate-data:"),
        "the same certificate after a restart"
    );
    let after = Kube {
        http: client_with_certificate(&c.profile, &yaml),
        ..bare(
            &c,
            &kubeconfig_field(&kubeconfig_yaml(&again), "server:").unwrap(),
            None,
            "",
        )
    };
    assert_eq!(after.request(Method::GET, NAMESPACES, None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn without_local_accounts_only_entra_tokens_for_the_aks_server_application_get_in() {
    let c = start().await;
    seed_cluster(&c, "aad1", true).await;
    seed_cluster(&c, "local1", false).await;

    let (_, doc) = c.arm(Method::GET, &c.cluster_id("aad1"), None).await;
    assert_eq!(doc["properties"]["disableLocalAccounts"], true, "{doc}");
    assert_eq!(doc["properties"]["aadProfile"]["managed"], true);

    let (status, err) = credential(&c, "aad1", "listClusterAdminCredential").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"]["code"], "BadRequest");
    assert_eq!(
        err["error"]["message"],
        "Getting static credential is not allowed because this cluster is set to disable local accounts."
    );

    let (status, user) = credential(&c, "aad1", "listClusterUserCredential").await;
    assert_eq!(
        (status, user["kubeconfigs"][0]["name"].as_str()),
        (StatusCode::OK, Some("clusterUser"))
    );
    let yaml = kubeconfig_yaml(&user);
    assert!(
        yaml.contains("command: kubelogin") && yaml.contains(AKS_SERVER_APP_ID),
        "{yaml}"
    );
    assert!(!yaml.contains("client-key-data"), "no static credential: {yaml}");
    let server = kubeconfig_field(&yaml, "server:").unwrap();
    assert!(kubeconfig_field(&yaml, "certificate-authority-data:").is_some());

    let aks_token = token_for(&c, &format!("{AKS_SERVER_APP_ID}/.default")).await;
    let (status, list) = bare(&c, &server, Some(&aks_token), "")
        .request(Method::GET, NAMESPACES, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let (status, created) = bare(&c, &server, Some(&aks_token), "")
        .create_secret("default", "s1", "v")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");

    assert_eq!(
        bare(&c, &server, Some(&c.arm_token), "")
            .request(Method::GET, NAMESPACES, None)
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "a token for another audience"
    );
    // A client certificate — even one of a cluster CA this cloud issued — is not accepted.
    let (_, local_creds) = credential(&c, "local1", "listClusterAdminCredential").await;
    let cert = Kube {
        http: client_with_certificate(&c.profile, &kubeconfig_yaml(&local_creds)),
        ..bare(&c, &server, None, "")
    };
    assert_eq!(
        cert.request(Method::GET, NAMESPACES, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    // A revoked token no longer gets in; a new one does.
    c.admin(Method::POST, "/_admin/tokens/revoke", None).await;
    assert_eq!(
        bare(&c, &server, Some(&aks_token), "")
            .request(Method::GET, NAMESPACES, None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let fresh = token_for(&c, &format!("{AKS_SERVER_APP_ID}/.default")).await;
    assert_eq!(
        bare(&c, &server, Some(&fresh), "")
            .request(Method::GET, NAMESPACES, None)
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn disable_local_accounts_needs_managed_entra_integration_on_put() {
    let c = start().await;
    let s = c.kms_setup("kv-aad1").await;
    let mut body = crate::common::cluster_body(Some(&s.identity), "1.30", true, None);
    body["properties"]["disableLocalAccounts"] = json!(true);
    let (status, err) = c.arm(Method::PUT, &c.cluster_id("aks1"), Some(body.clone())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");

    body["properties"]["aadProfile"] = json!({"managed": true, "enableAzureRBAC": true});
    let (status, doc) = c.arm(Method::PUT, &c.cluster_id("aks1"), Some(body)).await;
    assert!(status.is_success(), "{doc}");
    let doc = c.wait_cluster(&c.cluster_id("aks1")).await;
    assert_eq!(
        doc["properties"]["aadProfile"]["tenantID"],
        c.profile.tenant_id.as_str()
    );
    assert_eq!(
        credential(&c, "aks1", "listClusterAdminCredential").await.0,
        StatusCode::BAD_REQUEST
    );
}
