//! The backend half of `aks`: managed clusters, their KMS block, creation and upgrades, each a
//! read-modify-write with `If-Match` that waits for the long-running operation.

use super::{guest, invalid, s, AzureBackend, R};
use crate::cloud::arm::CloudError;
use crate::names;
use crate::resource_id::ResourceId;
use crate::wit::aks::{Cluster, ClusterSpec, KmsConfig, NetworkAccess};
use serde_json::{json, Value};

fn cluster_of(doc: &Value) -> Cluster {
    let p = &doc["properties"];
    let kms = &p["securityProfile"]["azureKeyVaultKms"];
    let uai = doc["identity"]["userAssignedIdentities"]
        .as_object()
        .and_then(|m| m.keys().next().cloned());
    Cluster {
        id: s(&doc["id"]),
        name: s(&doc["name"]),
        location: s(&doc["location"]),
        kubernetes_version: s(&p["kubernetesVersion"]),
        current_kubernetes_version: s(&p["currentKubernetesVersion"]),
        provisioning_state: s(&p["provisioningState"]),
        identity_type: doc["identity"]["type"].as_str().unwrap_or("None").to_string(),
        user_assigned_identity: uai,
        vnet_integration: p["apiServerAccessProfile"]["enableVnetIntegration"] == json!(true),
        kms: kms.is_object().then(|| KmsConfig {
            enabled: kms["enabled"] == json!(true),
            key_id: s(&kms["keyId"]),
            network_access: if kms["keyVaultNetworkAccess"] == "Private" {
                NetworkAccess::Private
            } else {
                NetworkAccess::Public
            },
            vault_resource_id: kms["keyVaultResourceId"]
                .as_str()
                .filter(|r| !r.is_empty())
                .map(str::to_string),
        }),
        tenant_id: s(&doc["identity"]["tenantId"]),
    }
}

/// The `azureKeyVaultKms` block as `az aks update` writes it (reference §1.7).
fn kms_block(kms: &KmsConfig) -> Value {
    if !kms.enabled {
        return json!({"enabled": false});
    }
    match kms.network_access {
        NetworkAccess::Public => {
            json!({"enabled": true, "keyId": kms.key_id, "keyVaultNetworkAccess": "Public", "keyVaultResourceId": ""})
        }
        NetworkAccess::Private => json!({"enabled": true, "keyId": kms.key_id, "keyVaultNetworkAccess": "Private",
            "keyVaultResourceId": kms.vault_resource_id.clone().unwrap_or_default()}),
    }
}

/// An enabled KMS block must carry a versioned key id (an unversioned one selects another AKS
/// feature); a private one names its vault.
fn check_kms(kms: &KmsConfig) -> R<()> {
    if !kms.enabled {
        return Ok(());
    }
    names::versioned_key_id(&kms.key_id).map_err(|e| {
        invalid(
            "UnversionedKeyId",
            format!("{e}; an unversioned key id selects another AKS feature"),
        )
    })?;
    if kms.network_access == NetworkAccess::Private && kms.vault_resource_id.as_deref().is_none_or(str::is_empty) {
        return Err(invalid(
            "VaultResourceIdRequired",
            "Private network access needs the vault's resource id",
        ));
    }
    Ok(())
}

impl AzureBackend {
    /// PUTs `doc` with `If-Match` and waits for the operation; the final resource document.
    async fn put_and_wait(&self, id: &ResourceId, doc: &Value) -> Result<Value, CloudError> {
        // The eTag exactly as the service returned it (quoted or not): `If-Match` is compared
        // literally.
        let extra: Vec<(&str, &str)> = doc["eTag"].as_str().map(|e| ("If-Match", e)).into_iter().collect();
        let first = self.arm.put(id, &self.versions.clusters, doc, &extra).await?;
        Ok(self.arm.wait(id, &self.versions.clusters, first).await?.body)
    }

    pub(super) async fn cluster(&self, cluster: &ResourceId) -> R<Cluster> {
        Ok(cluster_of(&self.get_doc(cluster, &self.versions.clusters).await?))
    }

    /// Every cluster of a subscription, following `nextLink`s on Resource Manager's own host.
    pub(super) async fn clusters(&self, subscription: &ResourceId) -> R<Vec<Cluster>> {
        let collection = super::child(
            subscription,
            &["providers", "Microsoft.ContainerService", "managedClusters"],
        )?;
        let mut out = Vec::new();
        let mut page = self
            .arm
            .get(&collection, &self.versions.clusters)
            .await
            .map_err(guest)?
            .body;
        loop {
            out.extend(page["value"].as_array().into_iter().flatten().map(cluster_of));
            match page["nextLink"].as_str() {
                Some(next) if !next.is_empty() => page = self.arm.get_link(next).await.map_err(guest)?.body,
                _ => return Ok(out),
            }
        }
    }

    /// Sets the KMS block by read-modify-write of the whole cluster (a no-op when it is already
    /// so and the cluster is settled).
    pub(super) async fn put_kms(&self, cluster: &ResourceId, kms: &KmsConfig) -> R<Cluster> {
        check_kms(kms)?;
        // Read-modify-write, again from the read after AKS refused the identity's permission
        // while a role assignment kmsflow made was still propagating.
        let done = self
            .through_propagation("aks.set-kms", || async {
                // A 412 after a retry means an earlier attempt changed the cluster (its answer
                // was lost): read again and judge from what is there now.
                let mut after_412 = false;
                for _ in 0..3 {
                    match self.try_put_kms(cluster, kms, after_412).await {
                        Err(CloudError::Service { status: 412, .. }) => after_412 = true,
                        other => return other,
                    }
                }
                self.try_put_kms(cluster, kms, true).await
            })
            .await
            .map_err(guest)?;
        Ok(cluster_of(&done))
    }

    /// One read-modify-write of the KMS block (see [`AzureBackend::put_kms`]).
    /// `after_412`: an earlier attempt of this call was refused because the cluster had changed;
    /// if it now shows the very change asked for, still in progress, that attempt made it (its
    /// answer was lost), so wait for it. Otherwise an operation in progress is somebody else's,
    /// and AKS's `409 OperationNotAllowed` is the answer.
    async fn try_put_kms(&self, cluster: &ResourceId, kms: &KmsConfig, after_412: bool) -> Result<Value, CloudError> {
        let read = self.arm.get(cluster, &self.versions.clusters).await?;
        let current = cluster_of(&read.body);
        if let Some(existing) = &current.kms {
            let same = existing.enabled == kms.enabled
                && (!kms.enabled || (existing.key_id == kms.key_id && existing.network_access == kms.network_access));
            if same && current.provisioning_state == "Succeeded" {
                return Ok(read.body);
            }
            if same && after_412 && !matches!(current.provisioning_state.as_str(), "Failed" | "Canceled") {
                return Ok(self.arm.wait(cluster, &self.versions.clusters, read).await?.body);
            }
        }
        let mut doc = read.body;
        let block = if kms.enabled {
            kms_block(kms)
        } else {
            // `az aks update --disable-azure-keyvault-kms` keeps the other fields.
            let mut b = doc["properties"]["securityProfile"]["azureKeyVaultKms"].clone();
            if !b.is_object() {
                b = json!({});
            }
            b["enabled"] = json!(false);
            b
        };
        doc["properties"]["securityProfile"]["azureKeyVaultKms"] = block;
        self.put_and_wait(cluster, &doc).await
    }

    /// Creates the cluster (`If-None-Match: *`) unless it exists, and waits.
    pub(super) async fn new_cluster(&self, cluster: &ResourceId, spec: &ClusterSpec) -> R<Cluster> {
        match self.arm.get(cluster, &self.versions.clusters).await {
            Ok(existing) => return Ok(cluster_of(&existing.body)),
            Err(e) if e.status() == Some(404) => {}
            Err(e) => return Err(guest(e)),
        }
        if let Some(kms) = &spec.kms {
            check_kms(kms)?;
        }
        let name = cluster.last();
        let mut body = json!({
            "location": spec.location,
            "identity": {"type": "UserAssigned", "userAssignedIdentities": {spec.identity.clone(): {}}},
            "properties": {
                "kubernetesVersion": spec.kubernetes_version, "dnsPrefix": name,
                "agentPoolProfiles": [{"name": "nodepool1", "count": spec.node_count.max(1), "vmSize": "Standard_D2s_v3", "mode": "System", "osType": "Linux"}],
                "apiServerAccessProfile": {"enableVnetIntegration": spec.vnet_integration},
            },
        });
        if let Some(kms) = &spec.kms {
            body["properties"]["securityProfile"] = json!({"azureKeyVaultKms": kms_block(kms)});
        }
        let first = self
            .through_propagation("aks.create-cluster", || {
                self.arm
                    .put(cluster, &self.versions.clusters, &body, &[("If-None-Match", "*")])
            })
            .await
            .map_err(guest)?;
        let done = self
            .arm
            .wait(cluster, &self.versions.clusters, first)
            .await
            .map_err(guest)?;
        Ok(cluster_of(&done.body))
    }

    /// Sets the control plane's and every node pool's version, and waits.
    pub(super) async fn upgrade_to(&self, cluster: &ResourceId, version: &str) -> R<Cluster> {
        let mut doc = self.get_doc(cluster, &self.versions.clusters).await?;
        if doc["properties"]["kubernetesVersion"] == json!(version)
            && doc["properties"]["provisioningState"] == "Succeeded"
        {
            return Ok(cluster_of(&doc));
        }
        doc["properties"]["kubernetesVersion"] = json!(version);
        if let Some(pools) = doc["properties"]["agentPoolProfiles"].as_array_mut() {
            for pool in pools {
                pool["orchestratorVersion"] = json!(version);
            }
        }
        if let Some(p) = doc["properties"].as_object_mut() {
            p.remove("servicePrincipalProfile");
        }
        let done = self.put_and_wait(cluster, &doc).await.map_err(guest)?;
        Ok(cluster_of(&done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kms(key_id: &str) -> KmsConfig {
        KmsConfig {
            enabled: true,
            key_id: key_id.to_string(),
            network_access: NetworkAccess::Public,
            vault_resource_id: None,
        }
    }

    #[test]
    fn only_versioned_key_ids_pass() {
        assert!(check_kms(&kms(
            "https://kv1.vault.azure.net/keys/k/0f1e2d3c4b5a69788796a5b4c3d2e1f0"
        ))
        .is_ok());
        for bad in [
            "https://kv1.vault.azure.net/keys/k",
            "https://kv1.vault.azure.net/keys/k/",
            "http://kv.vault.azure.net/keys/k/0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        ] {
            assert!(check_kms(&kms(bad)).is_err(), "{bad}");
        }
    }
}
