//! Rules for every non-resource-id value that reaches a URL, a header or a request body: the
//! api-version, Key Vault names, key names and versions, Kubernetes namespaces and label
//! selectors, principal ids, and a length bound for any other text argument.
//!
//! Each check refuses; none repairs. They run at the WIT boundary, before the grant check and
//! before any request, and again where a URL is built (so a backend called by an embedder gets
//! the same guarantees).

use crate::resource_id::shorten;

/// Longest free-text argument of a capability call (a location, a Kubernetes version, …).
pub const MAX_TEXT_ARG_BYTES: usize = 256;
/// Longest JSON body `arm.request` forwards.
pub const MAX_REQUEST_BODY_BYTES: usize = 256 * 1024;
/// Longest Kubernetes continue token a plugin may hand back.
pub const MAX_CONTINUE_TOKEN_BYTES: usize = 16 * 1024;
/// Longest label selector.
pub const MAX_LABEL_SELECTOR_BYTES: usize = 1024;
/// Most entries in the state ConfigMap a plugin may write, and their total size.
pub const MAX_STATE_ENTRIES: usize = 64;
pub const MAX_STATE_BYTES: usize = 64 * 1024;

/// A value that broke its rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} `{shown}` is invalid: {rule}")]
pub struct NameError {
    /// What the value is (`api-version`, `key name`, …).
    pub what: &'static str,
    /// The start of the value, escaped.
    pub shown: String,
    /// The rule it broke.
    pub rule: &'static str,
}

fn check(what: &'static str, value: &str, ok: bool, rule: &'static str) -> Result<(), NameError> {
    if ok {
        Ok(())
    } else {
        Err(NameError {
            what,
            shown: shorten(value),
            rule,
        })
    }
}

fn all(value: &str, f: impl Fn(u8) -> bool) -> bool {
    value.bytes().all(f)
}

/// An ARM api-version: `YYYY-MM-DD` or `YYYY-MM-DD-preview`.
pub fn api_version(value: &str) -> Result<(), NameError> {
    let date = value.strip_suffix("-preview").unwrap_or(value);
    let b = date.as_bytes();
    let ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    check("api-version", value, ok, "expected YYYY-MM-DD or YYYY-MM-DD-preview")
}

/// A Key Vault data-plane api-version: `MAJOR.MINOR` with an optional `-preview` (`7.5`,
/// `7.6-preview.1`).
pub fn keyvault_api_version(value: &str) -> Result<(), NameError> {
    let (base, preview) = match value.split_once("-preview") {
        Some((b, p)) => (b, Some(p)),
        None => (value, None),
    };
    let number = |t: &str| !t.is_empty() && t.len() <= 4 && all(t, |c| c.is_ascii_digit());
    let base_ok = base.split_once('.').is_some_and(|(a, b)| number(a) && number(b));
    let preview_ok = preview.is_none_or(|p| p.is_empty() || p.strip_prefix('.').is_some_and(number));
    check(
        "Key Vault api-version",
        value,
        base_ok && preview_ok,
        "expected MAJOR.MINOR, optionally -preview[.N] (e.g. 7.5)",
    )
}

/// A Key Vault name: 3–24 letters, digits and hyphens, starting with a letter, ending with a
/// letter or digit, without consecutive hyphens.
pub fn vault_name(value: &str) -> Result<(), NameError> {
    let ok = (3..=24).contains(&value.len())
        && all(value, |c| c.is_ascii_alphanumeric() || c == b'-')
        && value.as_bytes()[0].is_ascii_alphabetic()
        && !value.ends_with('-')
        && !value.contains("--");
    check(
        "vault name",
        value,
        ok,
        "3-24 letters, digits and hyphens, starting with a letter, ending with a letter or digit, no `--`",
    )
}

/// A Key Vault key name: 1–127 letters, digits and hyphens.
pub fn key_name(value: &str) -> Result<(), NameError> {
    let ok = (1..=127).contains(&value.len()) && all(value, |c| c.is_ascii_alphanumeric() || c == b'-');
    check("key name", value, ok, "1-127 letters, digits and hyphens")
}

/// A Key Vault key version: 32 hexadecimal characters.
pub fn key_version(value: &str) -> Result<(), NameError> {
    let ok = value.len() == 32 && all(value, |c| c.is_ascii_hexdigit());
    check("key version", value, ok, "32 hexadecimal characters")
}

/// A Kubernetes namespace: a DNS-1123 label.
pub fn namespace(value: &str) -> Result<(), NameError> {
    let ok = (1..=63).contains(&value.len())
        && all(value, |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    check(
        "namespace",
        value,
        ok,
        "a DNS label: 1-63 lowercase letters, digits and hyphens",
    )
}

/// A label selector: at most [`MAX_LABEL_SELECTOR_BYTES`] of the characters selectors use.
pub fn label_selector(value: &str) -> Result<(), NameError> {
    let ok = value.len() <= MAX_LABEL_SELECTOR_BYTES
        && all(value, |c| {
            c.is_ascii_alphanumeric()
                || matches!(c, b'-' | b'_' | b'.' | b'/' | b'=' | b'!' | b',' | b'(' | b')' | b' ')
        });
    check(
        "label selector",
        value,
        ok,
        "at most 1024 letters, digits, spaces and - _ . / = ! , ( )",
    )
}

/// An Entra object id (a GUID).
pub fn guid(what: &'static str, value: &str) -> Result<(), NameError> {
    let b = value.as_bytes();
    let ok = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
    check(what, value, ok, "a GUID (8-4-4-4-12 hexadecimal digits)")
}

/// Any other text argument: at most `max` bytes, no control characters.
pub fn text(what: &'static str, value: &str, max: usize) -> Result<(), NameError> {
    let ok = value.len() <= max && !value.chars().any(char::is_control);
    check(what, value, ok, "too long, or has control characters")
}

/// A versioned Key Vault key id `https://{vault}.{suffix}/keys/{name}/{version}`, split into
/// (vault host, key name, version) after checking every part.
pub fn versioned_key_id(value: &str) -> Result<(String, String, String), NameError> {
    let bad = |rule| NameError {
        what: "key id",
        shown: shorten(value),
        rule,
    };
    let rest = value.strip_prefix("https://").ok_or(bad(
        "expected https://{vault}.{dns suffix}/keys/{name}/{32-hex version}",
    ))?;
    let parts: Vec<&str> = rest.splitn(5, '/').collect();
    let [host, keys, name, version] = parts[..] else {
        return Err(bad(
            "expected https://{vault}.{dns suffix}/keys/{name}/{32-hex version} (an unversioned id selects another AKS feature)",
        ));
    };
    if keys != "keys" {
        return Err(bad("the path must start with /keys/"));
    }
    let (vault, _suffix) = host
        .split_once('.')
        .ok_or(bad("the host is not {vault}.{dns suffix}"))?;
    let host_ok = host.len() <= 253
        && all(host, |c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b':'))
        && !host.contains("..");
    if !host_ok {
        return Err(bad("the host is not a DNS name"));
    }
    vault_name(vault)?;
    key_name(name)?;
    key_version(version)?;
    Ok((host.to_ascii_lowercase(), name.to_string(), version.to_string()))
}

/// Whether `value` is what a parameter declared with `format` must be (an empty text means "not
/// given" and passes; the plugin decides what that means).
pub fn text_format(format: crate::wit::types::TextFormat, value: &str) -> Result<(), String> {
    use crate::resource_id::ResourceId;
    use crate::wit::types::TextFormat as F;
    if value.is_empty() {
        return Ok(());
    }
    let of_type = |t: &str, what: &str| -> Result<(), String> {
        let id = ResourceId::parse(value).map_err(|e| e.to_string())?;
        if id.is_resource_of(t) {
            Ok(())
        } else {
            Err(format!("`{}` is not {what} id (…/providers/{t}/NAME)", shorten(value)))
        }
    };
    match format {
        F::ResourceId => ResourceId::parse(value).map(drop).map_err(|e| e.to_string()),
        F::ClusterId => of_type("Microsoft.ContainerService/managedClusters", "a managed cluster"),
        F::VaultId => of_type("Microsoft.KeyVault/vaults", "a key vault"),
        F::IdentityId => of_type(
            "Microsoft.ManagedIdentity/userAssignedIdentities",
            "a user-assigned identity",
        ),
        F::KeyVaultName => vault_name(value).map_err(|e| e.to_string()),
        F::KeyName => key_name(value).map_err(|e| e.to_string()),
        F::VersionedKeyId => versioned_key_id(value).map(drop).map_err(|e| e.to_string()),
        F::KubernetesVersion => {
            let parts: Vec<&str> = value.split('.').collect();
            let ok = (2..=3).contains(&parts.len())
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.len() <= 4 && all(p, |c| c.is_ascii_digit()));
            check("Kubernetes version", value, ok, "MAJOR.MINOR or MAJOR.MINOR.PATCH").map_err(|e| e.to_string())
        }
        F::Duration => humantime::parse_duration(value)
            .map(drop)
            .map_err(|e| format!("`{}` is not a duration: {e}", shorten(value))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions() {
        for ok in ["2024-01-01", "2026-01-02-preview"] {
            assert!(api_version(ok).is_ok(), "{ok}");
        }
        for bad in [
            "2024-01-01&$expand=x#",
            "2024-1-01",
            "latest",
            "",
            "2024-01-01-preview2",
            "2024/01/01",
        ] {
            assert!(api_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_vault_names() {
        assert!(vault_name("kv-aks1").is_ok());
        for bad in ["kv", "1kv", "kv-", "k--v", "kv_1", "kv.1", "a23456789012345678901234x"] {
            assert!(vault_name(bad).is_err(), "{bad}");
        }
        assert!(key_name("etcd-kek").is_ok());
        for bad in ["", "a/b", "a%2f", "..", "a b"] {
            assert!(key_name(bad).is_err(), "{bad}");
        }
        assert!(key_version("0f1e2d3c4b5a69788796a5b4c3d2e1f0").is_ok());
        assert!(key_version("../../keys/other/0f1e2d3c4b5a6978").is_err());
    }

    #[test]
    fn key_ids_are_split_after_every_part_is_checked() {
        let (host, name, version) =
            versioned_key_id("https://kv1.vault.azure.net/keys/k/0f1e2d3c4b5a69788796a5b4c3d2e1f0").unwrap();
        assert_eq!((host.as_str(), name.as_str()), ("kv1.vault.azure.net", "k"));
        assert_eq!(version.len(), 32);
        for bad in [
            "https://kv1.vault.azure.net/keys/k",
            "https://kv1.vault.azure.net/keys/k/",
            "http://kv1.vault.azure.net/keys/k/0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            "https://kv1.vault.azure.net/keys/k/0f1e2d3c4b5a69788796a5b4c3d2e1f0/x",
            "https://kv1.vault.azure.net/keys/%6b/0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            "https://kv1.vault.azure.net/secrets/k/0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            "https://evil@kv1.vault.azure.net/keys/k/0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        ] {
            assert!(versioned_key_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn declared_text_formats() {
        use crate::wit::types::TextFormat as F;
        let cluster = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/a";
        assert!(text_format(F::ClusterId, cluster).is_ok());
        assert!(text_format(F::VaultId, cluster).is_err());
        assert!(text_format(F::KubernetesVersion, "1.27").is_ok());
        assert!(text_format(F::KubernetesVersion, "v1.27").is_err());
        assert!(text_format(F::Duration, "30s").is_ok());
        assert!(text_format(F::Duration, "soon").is_err());
        assert!(text_format(F::KeyVaultName, "my_vault!!").is_err());
        assert!(text_format(F::VersionedKeyId, "https://kv1.vault.azure.net/keys/k").is_err());
        assert!(text_format(F::ClusterId, "").is_ok(), "empty is not given");
    }

    #[test]
    fn kubernetes_names() {
        assert!(namespace("kube-system").is_ok());
        for bad in ["..", "a/b", "Kube", "-a", ""] {
            assert!(namespace(bad).is_err(), "{bad}");
        }
        assert!(label_selector("app in (a,b),tier!=x").is_ok());
        assert!(label_selector("a=b&c=d").is_err());
        assert!(guid("principal id", "6dae42f8-4368-4678-94ff-3960e28e3630").is_ok());
        assert!(guid("principal id", "6dae42f8-4368-4678-94ff-3960e28e363' or 1").is_err());
    }
}
