//! The at-rest formats of the Kubernetes API server's KMS envelope encryption, as it writes them
//! into etcd (azure-reference.md §6.1):
//!
//! - KMS v1: `k8s:enc:kms:v1:{provider}:` + `u16 BE len(encDEK)` + encDEK + AES-256-GCM data,
//!   a fresh 32-byte DEK per write; the data is `nonce[12] || ciphertext || tag`, with the etcd key
//!   as additional data.
//! - KMS v2: `k8s:enc:kms:v2:{provider}:` + protobuf `EncryptedObject`. The DEK source is a seed
//!   (`HKDF_SHA256_XNONCE_AES_GCM_SEED`): each write picks a random 32-byte `info`, derives the DEK
//!   with HKDF-SHA256(seed, info), and stores `encryptedData = info || nonce[12] || ciphertext || tag`.
//!
//! encDEK / `encryptedDEKSource` are the ASCII base64url text Key Vault returned, as the Azure
//! KMS plugin stores them.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use prost::Message;
use rand::RngCore;
use sha2::Sha256;

pub const V1_PREFIX: &str = "k8s:enc:kms:v1:";
pub const V2_PREFIX: &str = "k8s:enc:kms:v2:";

/// `EncryptedObject` of `kmsv2/v2/api.proto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EncryptedObject {
    #[prost(bytes = "vec", tag = "1")]
    pub encrypted_data: Vec<u8>,
    #[prost(string, tag = "2")]
    pub key_id: String,
    #[prost(bytes = "vec", tag = "3")]
    pub encrypted_dek_source: Vec<u8>,
    #[prost(btree_map = "string, bytes", tag = "4")]
    pub annotations: std::collections::BTreeMap<String, Vec<u8>>,
    #[prost(int32, tag = "5")]
    pub encrypted_dek_source_type: i32,
}

/// `HKDF_SHA256_XNONCE_AES_GCM_SEED`.
pub const SEED_SOURCE_TYPE: i32 = 1;

/// How a stored value is protected.
#[derive(Debug, Clone, PartialEq)]
pub enum AtRest {
    Plain,
    V1 {
        provider: String,
        encrypted_dek: Vec<u8>,
        data: Vec<u8>,
    },
    V2 {
        provider: String,
        object: EncryptedObject,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum EnvelopeError {
    #[error("malformed {0} envelope")]
    Malformed(&'static str),
    #[error("decryption failed: the data key does not open this value")]
    Decrypt,
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::thread_rng().fill_bytes(&mut b);
    b
}

/// A fresh 32-byte data key (v1 DEK or v2 seed).
pub fn new_key() -> [u8; 32] {
    random()
}

fn seal(key: &[u8], plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new_from_slice(key).unwrap_or_else(|_| unreachable!("32-byte key"));
    let nonce = random::<12>();
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad })
        .unwrap_or_else(|_| unreachable!("AES-GCM encryption of in-memory data cannot fail"));
    [nonce.as_slice(), &sealed].concat()
}

fn open(key: &[u8], data: &[u8], aad: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    if data.len() < 12 + 16 {
        return Err(EnvelopeError::Decrypt);
    }
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| EnvelopeError::Decrypt)?;
    let (nonce, sealed) = data.split_at(12);
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
        .map_err(|_| EnvelopeError::Decrypt)
}

fn derive(seed: &[u8], info: &[u8]) -> [u8; 32] {
    let hk = Hkdf::<Sha256>::new(None, seed);
    let mut dek = [0u8; 32];
    hk.expand(info, &mut dek)
        .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 length"));
    dek
}

/// Seals a KMS v1 value with `dek`, whose Key Vault encryption is `encrypted_dek`.
pub fn seal_v1(provider: &str, dek: &[u8; 32], encrypted_dek: &[u8], etcd_key: &str, plaintext: &[u8]) -> Vec<u8> {
    let len = u16::try_from(encrypted_dek.len()).unwrap_or(u16::MAX);
    let mut out = format!("{V1_PREFIX}{provider}:").into_bytes();
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&encrypted_dek[..usize::from(len)]);
    out.extend(seal(dek, plaintext, etcd_key.as_bytes()));
    out
}

/// Seals a KMS v2 value with `seed`.
pub fn seal_v2(
    provider: &str,
    key_id: &str,
    seed: &[u8; 32],
    encrypted_seed: &[u8],
    annotations: &[(&str, &[u8])],
    etcd_key: &str,
    plaintext: &[u8],
) -> Vec<u8> {
    let info = random::<32>();
    let dek = derive(seed, &info);
    let object = EncryptedObject {
        encrypted_data: [info.as_slice(), &seal(&dek, plaintext, etcd_key.as_bytes())].concat(),
        key_id: key_id.to_string(),
        encrypted_dek_source: encrypted_seed.to_vec(),
        annotations: annotations.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect(),
        encrypted_dek_source_type: SEED_SOURCE_TYPE,
    };
    let mut out = format!("{V2_PREFIX}{provider}:").into_bytes();
    out.extend(object.encode_to_vec());
    out
}

/// Parses a stored value's envelope (not its contents).
pub fn parse(stored: &[u8]) -> Result<AtRest, EnvelopeError> {
    let split = |rest: &[u8], what| -> Result<(String, Vec<u8>), EnvelopeError> {
        let colon = rest
            .iter()
            .position(|b| *b == b':')
            .ok_or(EnvelopeError::Malformed(what))?;
        let provider = String::from_utf8(rest[..colon].to_vec()).map_err(|_| EnvelopeError::Malformed(what))?;
        Ok((provider, rest[colon + 1..].to_vec()))
    };
    if let Some(rest) = stored.strip_prefix(V1_PREFIX.as_bytes()) {
        let (provider, body) = split(rest, "kms v1")?;
        if body.len() < 2 {
            return Err(EnvelopeError::Malformed("kms v1"));
        }
        let len = usize::from(u16::from_be_bytes([body[0], body[1]]));
        if body.len() < 2 + len {
            return Err(EnvelopeError::Malformed("kms v1"));
        }
        return Ok(AtRest::V1 {
            provider,
            encrypted_dek: body[2..2 + len].to_vec(),
            data: body[2 + len..].to_vec(),
        });
    }
    if let Some(rest) = stored.strip_prefix(V2_PREFIX.as_bytes()) {
        let (provider, body) = split(rest, "kms v2")?;
        let object = EncryptedObject::decode(body.as_slice()).map_err(|_| EnvelopeError::Malformed("kms v2"))?;
        return Ok(AtRest::V2 { provider, object });
    }
    Ok(AtRest::Plain)
}

/// Opens a v1 value's data with its DEK.
pub fn open_v1(dek: &[u8], data: &[u8], etcd_key: &str) -> Result<Vec<u8>, EnvelopeError> {
    open(dek, data, etcd_key.as_bytes())
}

/// Opens a v2 object's data with its seed.
pub fn open_v2(seed: &[u8], object: &EncryptedObject, etcd_key: &str) -> Result<Vec<u8>, EnvelopeError> {
    if object.encrypted_data.len() < 32 {
        return Err(EnvelopeError::Malformed("kms v2"));
    }
    let (info, sealed) = object.encrypted_data.split_at(32);
    open(&derive(seed, info), sealed, etcd_key.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_round_trips_and_binds_the_etcd_key() {
        let dek = new_key();
        let sealed = seal_v1("p1", &dek, b"ENCRYPTED-DEK", "/registry/secrets/a/b", b"{\"data\":1}");
        assert!(sealed.starts_with(b"k8s:enc:kms:v1:p1:"));
        let AtRest::V1 {
            provider,
            encrypted_dek,
            data,
        } = parse(&sealed).unwrap()
        else {
            panic!("not v1")
        };
        assert_eq!(
            (provider.as_str(), encrypted_dek.as_slice()),
            ("p1", b"ENCRYPTED-DEK".as_slice())
        );
        assert_eq!(open_v1(&dek, &data, "/registry/secrets/a/b").unwrap(), b"{\"data\":1}");
        assert_eq!(
            open_v1(&dek, &data, "/registry/secrets/a/c"),
            Err(EnvelopeError::Decrypt)
        );
    }

    #[test]
    fn v2_round_trips_with_a_reused_seed() {
        let seed = new_key();
        let a = seal_v2(
            "p2",
            "kid",
            &seed,
            b"ENC-SEED",
            &[("version.azure.akv.io", b"1")],
            "/k",
            b"one",
        );
        let b = seal_v2("p2", "kid", &seed, b"ENC-SEED", &[], "/k", b"one");
        assert_ne!(a, b, "a fresh info and nonce per write");
        let AtRest::V2 { object, .. } = parse(&a).unwrap() else {
            panic!("not v2")
        };
        assert_eq!(object.key_id, "kid");
        assert_eq!(object.encrypted_dek_source_type, SEED_SOURCE_TYPE);
        assert_eq!(open_v2(&seed, &object, "/k").unwrap(), b"one");
        assert_eq!(parse(b"{\"plain\":true}").unwrap(), AtRest::Plain);
    }
}
