//! `kmsflow:workflow/aks`: managed clusters.

use super::{capability_call, CapabilityError, StepContext};
use crate::grants::Action;
use crate::wit::aks::{self, Cluster, ClusterSpec, KmsConfig};

impl aks::Host for StepContext {
    async fn get_cluster(&mut self, cluster: String) -> Result<Cluster, CapabilityError> {
        capability_call!(
            self,
            "aks.get-cluster",
            Some(Action::Read),
            Some(&cluster),
            |b, auth| { b.get_cluster(auth, &cluster) }
        )
    }

    async fn create_cluster(&mut self, cluster: String, spec: ClusterSpec) -> Result<Cluster, CapabilityError> {
        capability_call!(
            self,
            "aks.create-cluster",
            Some(Action::Write),
            Some(&cluster),
            |b, auth| { b.create_cluster(auth, &cluster, &spec) }
        )
    }

    async fn set_kms(&mut self, cluster: String, kms: KmsConfig) -> Result<Cluster, CapabilityError> {
        capability_call!(self, "aks.set-kms", Some(Action::Kms), Some(&cluster), |b, auth| {
            b.set_kms(auth, &cluster, &kms)
        })
    }

    async fn upgrade(&mut self, cluster: String, version: String) -> Result<Cluster, CapabilityError> {
        capability_call!(self, "aks.upgrade", Some(Action::Upgrade), Some(&cluster), |b, auth| {
            b.upgrade(auth, &cluster, &version)
        })
    }

    async fn list_clusters(&mut self, subscription: String) -> Result<Vec<Cluster>, CapabilityError> {
        capability_call!(
            self,
            "aks.list-clusters",
            Some(Action::Read),
            Some(&subscription),
            |b, auth| { b.list_clusters(auth, &subscription) }
        )
    }
}
