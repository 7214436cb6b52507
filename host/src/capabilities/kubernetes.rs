//! `kmsflow:workflow/kubernetes`: one cluster's Kubernetes API, reached with its admin
//! credential, which never leaves the host. Nothing here returns a secret's data.

use super::{capability_call, CapabilityError, StepContext, CLUSTER};
use crate::grants::Action;
use crate::names::{self, MAX_CONTINUE_TOKEN_BYTES, MAX_STATE_BYTES, MAX_STATE_ENTRIES};
use crate::wit::kubernetes::{self, Pod, RewritePage, State};
use crate::wit::types::ErrorKind;

/// Largest page a plugin may ask for (the API server caps lists similarly).
const MAX_PAGE_SIZE: u32 = 5000;

impl kubernetes::Host for StepContext {
    async fn count_secrets(&mut self, cluster: String) -> Result<u64, CapabilityError> {
        let cluster = self.resource_arg("kubernetes.count-secrets", &[Action::Read], &cluster, CLUSTER)?;
        capability_call!(
            self,
            "kubernetes.count-secrets",
            [Action::Read],
            Some(&cluster),
            |b, auth| b.count_secrets(auth, &cluster)
        )
    }

    async fn rewrite_secrets_page(
        &mut self,
        cluster: String,
        continue_token: Option<String>,
        page_size: u32,
    ) -> Result<RewritePage, CapabilityError> {
        let name = "kubernetes.rewrite-secrets-page";
        let cluster = self.resource_arg(name, &[Action::SecretsRewrite], &cluster, CLUSTER)?;
        if let Some(token) = &continue_token {
            self.arg(name, names::text("continue token", token, MAX_CONTINUE_TOKEN_BYTES))?;
        }
        let page_size = page_size.clamp(1, MAX_PAGE_SIZE);
        capability_call!(
            self,
            "kubernetes.rewrite-secrets-page",
            [Action::SecretsRewrite],
            Some(&cluster),
            |b, auth| b.rewrite_secrets_page(auth, &cluster, continue_token.as_deref(), page_size)
        )
    }

    async fn list_pods(
        &mut self,
        cluster: String,
        namespace: String,
        label_selector: String,
    ) -> Result<Vec<Pod>, CapabilityError> {
        let cluster = self.resource_arg("kubernetes.list-pods", &[Action::Read], &cluster, CLUSTER)?;
        self.arg("kubernetes.list-pods", names::namespace(&namespace))?;
        self.arg("kubernetes.list-pods", names::label_selector(&label_selector))?;
        capability_call!(
            self,
            "kubernetes.list-pods",
            [Action::Read],
            Some(&cluster),
            |b, auth| b.list_pods(auth, &cluster, &namespace, &label_selector)
        )
    }

    async fn get_state(&mut self, cluster: String) -> Result<Option<State>, CapabilityError> {
        let cluster = self.resource_arg("kubernetes.get-state", &[Action::Read], &cluster, CLUSTER)?;
        capability_call!(
            self,
            "kubernetes.get-state",
            [Action::Read],
            Some(&cluster),
            |b, auth| b.get_state(auth, &cluster)
        )
    }

    async fn put_state(
        &mut self,
        cluster: String,
        data: Vec<(String, String)>,
        resource_version: Option<String>,
    ) -> Result<State, CapabilityError> {
        let name = "kubernetes.put-state";
        let cluster = self.resource_arg(name, &[Action::Kms], &cluster, CLUSTER)?;
        let bytes: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
        if data.len() > MAX_STATE_ENTRIES || bytes > MAX_STATE_BYTES {
            return Err(CapabilityError::guest(
                ErrorKind::Invalid,
                "StateTooLarge",
                format!(
                    "{name}: the state holds at most {MAX_STATE_ENTRIES} entries and {MAX_STATE_BYTES} bytes \
                     ({} entries, {bytes} bytes given)",
                    data.len()
                ),
            ));
        }
        for (key, _) in &data {
            // ConfigMap keys: letters, digits, `-`, `_`, `.`; at most 253.
            let ok = !key.is_empty()
                && key.len() <= 253
                && key
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
            if !ok {
                return Err(CapabilityError::guest(
                    ErrorKind::Invalid,
                    "InvalidArgument",
                    format!("{name}: `{}` is not a ConfigMap key", crate::resource_id::shorten(key)),
                ));
            }
        }
        if let Some(rv) = &resource_version {
            self.arg(name, names::text("resource version", rv, 64))?;
        }
        capability_call!(
            self,
            "kubernetes.put-state",
            [Action::Kms],
            Some(&cluster),
            |b, auth| b.put_state(auth, &cluster, &data, resource_version.as_deref())
        )
    }
}
