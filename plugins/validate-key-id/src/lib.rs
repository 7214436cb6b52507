//! `validate-key-id`: rejects a Key Vault key id that AKS's legacy KMS would refuse or
//! misinterpret, before anything touches a cluster.
//!
//! The rules are those of `az aks update --azure-keyvault-kms-key-id` (https, exactly
//! `host/keys/name/version`) tightened by what the legacy feature needs: a 32-hex-character
//! version (an unversioned id silently selects a different AKS feature since api-version
//! 2026-07-01), a valid vault name, and a host under the expected Key Vault DNS suffix.

use kmsflow_sdk::{Error, Outputs, ParamSpec, Params, Plugin, PluginInfo};

struct ValidateKeyId;

/// The parts of a valid versioned key id.
#[derive(Debug, PartialEq)]
struct KeyId<'a> {
    vault: &'a str,
    host: &'a str,
    name: &'a str,
    version: &'a str,
}

fn parse<'a>(key_id: &'a str, dns_suffix: &str) -> Result<KeyId<'a>, String> {
    let rest = key_id.strip_prefix("https://").ok_or("a key id starts with https://")?;
    let segments: Vec<&str> = rest.split('/').collect();
    match segments.as_slice() {
        [host, "keys", name] | [host, "keys", name, ""] => Err(format!(
            "`{key_id}` has no version: AKS treats an unversioned key id as the new KMS experience; \
             use https://{host}/keys/{name}/<32-hex-version>"
        )),
        [host, "keys", name, version] => {
            let host_no_port = host.split(':').next().unwrap_or(host);
            let vault = host_no_port
                .strip_suffix(dns_suffix)
                .and_then(|v| v.strip_suffix('.'))
                .ok_or(format!(
                    "host `{host}` is not under the Key Vault suffix `{dns_suffix}`"
                ))?;
            check_vault_name(vault)?;
            check_key_name(name)?;
            if version.len() != 32 || !version.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("version `{version}` is not 32 hexadecimal characters"));
            }
            Ok(KeyId {
                vault,
                host,
                name,
                version,
            })
        }
        _ => Err(format!(
            "`{key_id}` is not a Key Vault key id: expected https://{{vault}}.{dns_suffix}/keys/{{name}}/{{version}}"
        )),
    }
}

fn check_vault_name(name: &str) -> Result<(), String> {
    let ok_chars = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let starts = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic());
    let ends = name.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if !(3..=24).contains(&name.len()) || !ok_chars || !starts || !ends || name.contains("--") {
        return Err(format!(
            "vault name `{name}` is invalid: 3-24 letters, digits and single hyphens, starting with a letter"
        ));
    }
    Ok(())
}

fn check_key_name(name: &str) -> Result<(), String> {
    let ok = (1..=127).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "key name `{name}` is invalid: 1-127 letters, digits and hyphens, starting with a letter"
        ))
    }
}

impl Plugin for ValidateKeyId {
    fn describe() -> PluginInfo {
        kmsflow_sdk::info(
            "validate-key-id",
            env!("CARGO_PKG_VERSION"),
            "Checks that a Key Vault key id is one AKS legacy KMS accepts (versioned, valid vault and key names)",
        )
        .param(
            ParamSpec::text(
                "key_id",
                "The versioned key id, https://{vault}.{suffix}/keys/{name}/{version}",
            )
            .required(),
        )
        .param(ParamSpec::text("dns_suffix", "The cloud's Key Vault DNS suffix").default_text("vault.azure.net"))
        .output(ParamSpec::text("vault_name", "The vault's name"))
        .output(ParamSpec::text("key_name", "The key's name"))
        .output(ParamSpec::text("key_version", "The key version (32 hex characters)"))
        .build()
    }

    fn run(params: Params) -> Result<Outputs, Error> {
        let key_id = params.text("key_id")?;
        let suffix = params.text("dns_suffix")?;
        let parsed = parse(&key_id, &suffix).map_err(Error::invalid)?;
        kmsflow_sdk::log::info(&format!(
            "key `{}` version {} in vault `{}` ({}) is a valid versioned key id",
            parsed.name, parsed.version, parsed.vault, parsed.host
        ));
        Ok(Outputs::new()
            .text("vault_name", parsed.vault)
            .text("key_name", parsed.name)
            .text("key_version", parsed.version))
    }
}

kmsflow_sdk::plugin!(ValidateKeyId);

#[cfg(test)]
mod tests {
    use super::*;

    const V: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

    #[test]
    fn accepts_a_versioned_id() {
        let id = format!("https://kv-etcd01.vault.azure.net/keys/etcd-kek/{V}");
        let k = parse(&id, "vault.azure.net").unwrap();
        assert_eq!((k.vault, k.name, k.version), ("kv-etcd01", "etcd-kek", V));
    }

    #[test]
    fn rejects_unversioned_and_malformed_ids() {
        let suffix = "vault.azure.net";
        assert!(parse("https://kv1.vault.azure.net/keys/k", suffix)
            .unwrap_err()
            .contains("no version"));
        assert!(parse("http://kv1.vault.azure.net/keys/k/v", suffix).is_err());
        assert!(parse(&format!("https://kv1.vault.azure.net/secrets/k/{V}"), suffix).is_err());
        assert!(parse(&format!("https://k--v.vault.azure.net/keys/k/{V}"), suffix).is_err());
        assert!(parse("https://kv1.vault.azure.net/keys/k/123", suffix)
            .unwrap_err()
            .contains("32 hex"));
    }
}
