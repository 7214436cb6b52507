//! The local cloud's certificate authority and server certificate, generated on first start and
//! kept in the state directory so that clients can trust one CA file across restarts.

use crate::error::LocalCloudError;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::path::Path;

/// PEM-encoded CA certificate, server certificate and server key.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Names the server certificate covers: ARM/Entra/Graph/admin on `localhost`, every vault's data
/// plane on `{vault}.vault.localhost`, and the loopback addresses (the Kubernetes API servers).
pub const SERVER_NAMES: [&str; 4] = ["localhost", "*.vault.localhost", "127.0.0.1", "::1"];

pub const CA_FILE: &str = "ca.pem";
const CERT_FILE: &str = "server.pem";
const KEY_FILE: &str = "server.key.pem";

/// Loads the material from `dir`, creating it on first use.
pub fn load_or_create(dir: &Path) -> Result<TlsMaterial, LocalCloudError> {
    let read = |f: &str| std::fs::read_to_string(dir.join(f));
    if let (Ok(ca_pem), Ok(cert_pem), Ok(key_pem)) = (read(CA_FILE), read(CERT_FILE), read(KEY_FILE)) {
        return Ok(TlsMaterial {
            ca_pem,
            cert_pem,
            key_pem,
        });
    }
    let material = generate()?;
    let write = |f: &str, s: &str| std::fs::write(dir.join(f), s).map_err(|e| LocalCloudError::io(dir.join(f), e));
    write(KEY_FILE, &material.key_pem)?;
    write(CERT_FILE, &material.cert_pem)?;
    write(CA_FILE, &material.ca_pem)?;
    Ok(material)
}

fn generate() -> Result<TlsMaterial, LocalCloudError> {
    let tls = |e: rcgen::Error| LocalCloudError::Tls(e.to_string());
    let ca_key = KeyPair::generate().map_err(tls)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "kmsflow local cloud CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(tls)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().map_err(tls)?;
    let names: Vec<String> = SERVER_NAMES.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names).map_err(tls)?;
    params.distinguished_name.push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &issuer).map_err(tls)?;
    Ok(TlsMaterial {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Serves the one server certificate to every client, except one that names (by SNI) the host
/// of a vault that is still `RegisteringDns`: for it there is no certificate, so the handshake
/// fails and the client sees a connection-level error before any HTTP exchange — as an Azure
/// client does for a vault whose DNS name does not resolve yet (see
/// `arm::vaults::dns_registered`).
pub struct VaultDns {
    key: std::sync::Arc<rustls::sign::CertifiedKey>,
    state: crate::state::Shared,
}

impl std::fmt::Debug for VaultDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultDns").finish_non_exhaustive()
    }
}

impl rustls::server::ResolvesServerCert for VaultDns {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
        if let Some(vault) = hello.server_name().and_then(crate::keyvault::vault_of_host) {
            if crate::arm::vaults::dns_registered(&self.state, &vault).ok().flatten() == Some(false) {
                return None;
            }
        }
        Some(self.key.clone())
    }
}

/// The server's TLS configuration: the material's certificate through [`VaultDns`], a client
/// certificate requested (never required) from every client for the clusters' API servers (see
/// [`crate::pki`]), and the ALPN protocols axum-server offers by default (`h2`, `http/1.1`).
pub fn server_config(
    material: &TlsMaterial,
    state: crate::state::Shared,
) -> Result<rustls::ServerConfig, LocalCloudError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls = |e: String| LocalCloudError::Tls(e);
    let certs = CertificateDer::pem_slice_iter(material.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(material.key_pem.as_bytes()).map_err(|e| tls(e.to_string()))?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).map_err(|e| tls(e.to_string()))?;
    let resolver = VaultDns {
        key: std::sync::Arc::new(rustls::sign::CertifiedKey::new(certs, signing)),
        state,
    };
    let mut config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(std::sync::Arc::new(crate::pki::AnyClientCert::new()))
        .with_cert_resolver(std::sync::Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
