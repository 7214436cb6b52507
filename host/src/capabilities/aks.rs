//! `kmsflow:workflow/aks`: managed clusters.

use super::{capability_call, CapabilityError, Expect, StepContext, CLUSTER, IDENTITY};
use crate::grants::Action;
use crate::names::{self, MAX_TEXT_ARG_BYTES};
use crate::wit::aks::{self, Cluster, ClusterSpec, KmsConfig};

impl StepContext {
    /// A KMS block's key id and vault id are checked before the call (an unversioned key id
    /// selects another AKS feature; a private vault is named by its resource id).
    fn kms_arg(&mut self, name: &'static str, kms: &KmsConfig) -> Result<(), CapabilityError> {
        if kms.enabled {
            self.arg(name, names::versioned_key_id(&kms.key_id).map(drop))?;
        } else {
            self.arg(name, names::text("key id", &kms.key_id, MAX_TEXT_ARG_BYTES))?;
        }
        if let Some(vault) = &kms.vault_resource_id {
            if !vault.is_empty() {
                self.resource_arg(name, &[], vault, super::VAULT)?;
            }
        }
        Ok(())
    }
}

impl aks::Host for StepContext {
    async fn get_cluster(&mut self, cluster: String) -> Result<Cluster, CapabilityError> {
        let cluster = self.resource_arg("aks.get-cluster", &[Action::Read], &cluster, CLUSTER)?;
        capability_call!(self, "aks.get-cluster", [Action::Read], Some(&cluster), |b, auth| b
            .get_cluster(auth, &cluster))
    }

    async fn create_cluster(&mut self, cluster: String, spec: ClusterSpec) -> Result<Cluster, CapabilityError> {
        // A cluster created with KMS on sets the KMS block: that needs `kms`, as `set-kms` does.
        let actions: &[Action] = if spec.kms.is_some() {
            &[Action::Write, Action::Kms]
        } else {
            &[Action::Write]
        };
        let cluster = self.resource_arg("aks.create-cluster", actions, &cluster, CLUSTER)?;
        self.resource_arg("aks.create-cluster", &[], &spec.identity, IDENTITY)?;
        self.arg(
            "aks.create-cluster",
            names::text("location", &spec.location, MAX_TEXT_ARG_BYTES),
        )?;
        self.arg(
            "aks.create-cluster",
            names::text("kubernetes version", &spec.kubernetes_version, MAX_TEXT_ARG_BYTES),
        )?;
        if let Some(kms) = &spec.kms {
            self.kms_arg("aks.create-cluster", kms)?;
        }
        capability_call!(self, "aks.create-cluster", actions, Some(&cluster), |b, auth| b
            .create_cluster(auth, &cluster, &spec))
    }

    async fn set_kms(&mut self, cluster: String, kms: KmsConfig) -> Result<Cluster, CapabilityError> {
        let cluster = self.resource_arg("aks.set-kms", &[Action::Kms], &cluster, CLUSTER)?;
        self.kms_arg("aks.set-kms", &kms)?;
        capability_call!(self, "aks.set-kms", [Action::Kms], Some(&cluster), |b, auth| b
            .set_kms(auth, &cluster, &kms))
    }

    async fn upgrade(&mut self, cluster: String, version: String) -> Result<Cluster, CapabilityError> {
        let cluster = self.resource_arg("aks.upgrade", &[Action::Upgrade], &cluster, CLUSTER)?;
        self.arg("aks.upgrade", names::text("version", &version, MAX_TEXT_ARG_BYTES))?;
        capability_call!(self, "aks.upgrade", [Action::Upgrade], Some(&cluster), |b, auth| b
            .upgrade(auth, &cluster, &version))
    }

    async fn list_clusters(&mut self, subscription: String) -> Result<Vec<Cluster>, CapabilityError> {
        let subscription = self.resource_arg(
            "aks.list-clusters",
            &[Action::Read],
            &subscription,
            Expect::Subscription,
        )?;
        capability_call!(
            self,
            "aks.list-clusters",
            [Action::Read],
            Some(&subscription),
            |b, auth| b.list_clusters(auth, &subscription)
        )
    }
}
