//! `kmsflow:workflow/kubernetes`: a cluster's Kubernetes API, without secret data.

use super::{capability_call, CapabilityError, StepContext};
use crate::grants::Action;
use crate::wit::kubernetes::{self, Pod, RewritePage, State};

impl kubernetes::Host for StepContext {
    async fn count_secrets(&mut self, cluster: String) -> Result<u64, CapabilityError> {
        capability_call!(
            self,
            "kubernetes.count-secrets",
            Some(Action::Read),
            Some(&cluster),
            |b, auth| { b.count_secrets(auth, &cluster) }
        )
    }

    async fn rewrite_secrets_page(
        &mut self,
        cluster: String,
        continue_token: Option<String>,
        page_size: u32,
    ) -> Result<RewritePage, CapabilityError> {
        capability_call!(
            self,
            "kubernetes.rewrite-secrets-page",
            Some(Action::SecretsRewrite),
            Some(&cluster),
            |b, auth| { b.rewrite_secrets_page(auth, &cluster, continue_token.as_deref(), page_size) }
        )
    }

    async fn list_pods(
        &mut self,
        cluster: String,
        namespace: String,
        label_selector: String,
    ) -> Result<Vec<Pod>, CapabilityError> {
        capability_call!(
            self,
            "kubernetes.list-pods",
            Some(Action::Read),
            Some(&cluster),
            |b, auth| { b.list_pods(auth, &cluster, &namespace, &label_selector) }
        )
    }

    async fn get_state(&mut self, cluster: String) -> Result<Option<State>, CapabilityError> {
        capability_call!(
            self,
            "kubernetes.get-state",
            Some(Action::Read),
            Some(&cluster),
            |b, auth| { b.get_state(auth, &cluster) }
        )
    }

    async fn put_state(
        &mut self,
        cluster: String,
        data: Vec<(String, String)>,
        resource_version: Option<String>,
    ) -> Result<State, CapabilityError> {
        capability_call!(
            self,
            "kubernetes.put-state",
            Some(Action::Kms),
            Some(&cluster),
            |b, auth| { b.put_state(auth, &cluster, &data, resource_version.as_deref()) }
        )
    }
}
