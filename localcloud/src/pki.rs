//! Each cluster's own certificate authority and its admin client certificate, as AKS issues them
//! (azure-reference.md §1.9: `listClusterAdminCredential` hands out a kubeconfig whose user is a
//! client certificate), and the TLS plumbing that lets an API server check a presented
//! certificate against *its* cluster's CA.
//!
//! How the check is split, and why: every API server shares the local cloud's one listener on
//! `127.0.0.1` (no SNI tells clusters apart at handshake time), so the TLS layer
//! ([`AnyClientCert`]) *requests* a client certificate from every client without requiring one,
//! checks only the proof of possession (the handshake signature), and hands the chain to the
//! request ([`PeerCertificates`]). The API server then verifies the chain with rustls's own
//! `WebPkiClientVerifier` rooted at that cluster's CA alone ([`verify`]). A certificate from
//! another cluster's CA is therefore refused with the API server's 401, where a real AKS API
//! server (one endpoint per cluster) would fail the handshake.
//!
//! The CA and the admin certificate are generated once per cluster, on first use, and kept in
//! the state database (`meta` key `cluster_pki:{lowercased cluster id}`), so a kubeconfig stays
//! valid across restarts of the local cloud.

use crate::error::LocalCloudError;
use crate::state::Shared;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A cluster's CA and the admin client certificate it issued, all PEM.
#[derive(Clone, Serialize, Deserialize)]
pub struct ClusterPki {
    pub ca_pem: String,
    ca_key_pem: String,
    /// `CN=masterclient, O=system:masters`, as AKS names the cluster admin.
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
}

impl std::fmt::Debug for ClusterPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterPki").finish_non_exhaustive()
    }
}

fn meta_key(cluster_id: &str) -> String {
    format!("cluster_pki:{}", cluster_id.to_ascii_lowercase())
}

fn generate(cluster_id: &str) -> Result<ClusterPki, rcgen::Error> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "ca");
    // Not part of the subject AKS uses; kept so that two clusters' CAs are told apart in a dump.
    ca.distinguished_name.push(
        DnType::OrganizationalUnitName,
        cluster_id.rsplit('/').next().unwrap_or("cluster"),
    );
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key)?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, "masterclient");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer)?;
    Ok(ClusterPki {
        ca_pem: ca_cert.pem(),
        ca_key_pem,
        admin_cert_pem: cert.pem(),
        admin_key_pem: key.serialize_pem(),
    })
}

/// The cluster's CA and admin certificate: the stored ones, or new ones stored first. Two
/// concurrent first calls agree on one CA (the first stored wins).
pub fn for_cluster(state: &Shared, cluster_id: &str) -> Result<ClusterPki, LocalCloudError> {
    let key = meta_key(cluster_id);
    if let Some(stored) = state.db.meta(&key)? {
        return serde_json::from_str(&stored).map_err(|e| LocalCloudError::Corrupt(format!("{key}: {e}")));
    }
    let fresh = generate(cluster_id).map_err(|e| LocalCloudError::Tls(e.to_string()))?;
    let text = serde_json::to_string(&fresh).map_err(|e| LocalCloudError::Corrupt(e.to_string()))?;
    let stored = state.db.insert_meta_if_absent(&key, &text)?;
    serde_json::from_str(&stored).map_err(|e| LocalCloudError::Corrupt(format!("{key}: {e}")))
}

/// A cluster's client-certificate verifier (rustls's WebPKI verifier rooted at its CA alone).
pub type Verifier = Arc<dyn ClientCertVerifier>;

fn build_verifier(ca_pem: &str) -> Result<Verifier, LocalCloudError> {
    let tls = |e: String| LocalCloudError::Tls(e);
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| tls(e.to_string()))?)
            .map_err(|e| tls(e.to_string()))?;
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build()
    .map_err(|e| tls(e.to_string()))
}

/// Whether `chain` (end entity first) was issued by the CA of cluster `cluster_id` and is valid
/// now. A cluster that never had credentials issued has no CA yet, so nothing verifies.
pub fn verify(state: &Shared, cluster_id: &str, chain: &[CertificateDer<'static>]) -> Result<bool, LocalCloudError> {
    let Some((end_entity, intermediates)) = chain.split_first() else {
        return Ok(false);
    };
    let id = cluster_id.to_ascii_lowercase();
    let cached = state
        .cluster_verifiers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&id)
        .cloned();
    let verifier = match cached {
        Some(v) => v,
        None => {
            let Some(stored) = state.db.meta(&meta_key(&id))? else {
                return Ok(false);
            };
            let pki: ClusterPki = serde_json::from_str(&stored).map_err(|e| LocalCloudError::Corrupt(e.to_string()))?;
            let v = build_verifier(&pki.ca_pem)?;
            state
                .cluster_verifiers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, v.clone());
            v
        }
    };
    Ok(verifier
        .verify_client_cert(end_entity, intermediates, UnixTime::now())
        .is_ok())
}

/// The certificate chain the client presented on this request's connection (empty when it
/// presented none), put into every request's extensions by [`PeerCertAcceptor`].
#[derive(Debug, Clone, Default)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);

/// The TLS layer's client-certificate policy: ask every client for a certificate, require none,
/// accept any chain whose handshake signature proves possession of its key. Which CA must have
/// issued it is decided per request by the API server ([`verify`]); every other service ignores
/// client certificates.
#[derive(Debug)]
pub struct AnyClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl AnyClientCert {
    pub fn new() -> Self {
        AnyClientCert {
            algorithms: rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
        }
    }
}

impl Default for AnyClientCert {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    /// No hints: a client then offers the certificate it has, whichever CA issued it.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// axum-server's rustls acceptor, plus: after the handshake, the client's certificate chain is
/// attached to every request of the connection as [`PeerCertificates`].
#[derive(Debug, Clone)]
pub struct PeerCertAcceptor {
    pub inner: axum_server::tls_rustls::RustlsAcceptor,
}

impl<I, S> axum_server::accept::Accept<I, S> for PeerCertAcceptor
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Send + 'static,
{
    type Stream = <axum_server::tls_rustls::RustlsAcceptor as axum_server::accept::Accept<I, S>>::Stream;
    type Service = WithPeerCertificates<S>;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let acceptor = self.inner.clone();
        Box::pin(async move {
            let (stream, service) = acceptor.accept(stream, service).await?;
            let chain = stream
                .get_ref()
                .1
                .peer_certificates()
                .map(<[CertificateDer<'static>]>::to_vec)
                .unwrap_or_default();
            Ok((
                stream,
                WithPeerCertificates {
                    inner: service,
                    certs: PeerCertificates(Arc::new(chain)),
                },
            ))
        })
    }
}

/// A connection's service that inserts [`PeerCertificates`] into each request.
#[derive(Debug, Clone)]
pub struct WithPeerCertificates<S> {
    inner: S,
    certs: PeerCertificates,
}

impl<S, B> tower_service::Service<axum::http::Request<B>> for WithPeerCertificates<S>
where
    S: tower_service::Service<axum::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: axum::http::Request<B>) -> Self::Future {
        req.extensions_mut().insert(self.certs.clone());
        self.inner.call(req)
    }
}
