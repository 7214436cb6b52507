//! The one canonical form of an Azure Resource Manager resource id (design.md §5a).
//!
//! A [`ResourceId`] is parsed once, where a plugin or a pipeline hands the host a string, and is
//! the only thing the grant check and the backends accept. Parsing refuses instead of decoding:
//! a `%`, a dot segment, an empty segment (a doubled or trailing `/`), a backslash, a query or
//! fragment character, a control or non-ASCII character, or anything outside ARM's name
//! characters is an error, so that no two spellings of a path can name different resources on
//! the wire. Length and segment count are checked before any per-segment work, so a hostile id
//! costs the host at most [`MAX_RESOURCE_ID_BYTES`] bytes of scanning.
//!
//! Segments keep their spelling (ARM is case-insensitive but echoes what it was sent);
//! comparisons — grant coverage, resource types — are on whole segments, ignoring ASCII case.
//! Every URL the host sends is built from [`ResourceId::segments`] with the `url` crate's
//! segment API, never by concatenating strings.

use std::fmt;

/// Longest resource id accepted, in bytes (ARM's own limit is lower for most types).
pub const MAX_RESOURCE_ID_BYTES: usize = 2048;
/// Most `/`-separated segments in a resource id (a nested child resource plus an action has ~14).
pub const MAX_RESOURCE_ID_SEGMENTS: usize = 32;
/// Longest single segment (ARM names are at most 260 characters for any type).
pub const MAX_SEGMENT_BYTES: usize = 260;

/// Why a string is not a resource id. The offending text is kept short for messages and the
/// journal: it is shown, at most, as its first 120 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{shown}` is not an ARM resource id: {reason}")]
pub struct ResourceIdError {
    /// The start of the refused text, escaped for display.
    pub shown: String,
    /// What rule it broke.
    pub reason: String,
}

/// Shows at most the first 120 characters of `text`, with control characters escaped, for an
/// error message or a journal record about a refused value.
pub fn shorten(text: &str) -> String {
    const SHOWN: usize = 120;
    let mut out: String = text.chars().take(SHOWN).flat_map(char::escape_default).collect();
    let total = text.chars().count();
    if total > SHOWN {
        out.push_str(&format!("… ({} characters)", total));
    }
    out
}

fn refuse(text: &str, reason: impl Into<String>) -> ResourceIdError {
    ResourceIdError {
        shown: shorten(text),
        reason: reason.into(),
    }
}

/// Whether `c` may appear in a segment: ASCII letters and digits, `-`, `_`, `.`, `(`, `)`.
fn segment_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'(' | b')')
}

/// A validated ARM resource id: `/subscriptions/{id}` followed by whole segments. Its `Debug`
/// form is its text, so journaled arguments read as ids.
#[derive(Clone)]
pub struct ResourceId {
    segments: Vec<String>,
}

impl PartialEq for ResourceId {
    fn eq(&self, other: &Self) -> bool {
        self.segments.len() == other.segments.len() && self.starts_with(other)
    }
}

impl Eq for ResourceId {}

impl std::hash::Hash for ResourceId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for s in &self.segments {
            s.to_ascii_lowercase().hash(state);
        }
    }
}

impl ResourceId {
    /// Parses `text`, refusing every spelling that is not canonical (see the module docs).
    pub fn parse(text: &str) -> Result<Self, ResourceIdError> {
        if text.len() > MAX_RESOURCE_ID_BYTES {
            return Err(refuse(
                text,
                format!("longer than {MAX_RESOURCE_ID_BYTES} bytes ({})", text.len()),
            ));
        }
        let rest = text
            .strip_prefix('/')
            .ok_or_else(|| refuse(text, "it must start with /subscriptions/"))?;
        if let Some(bad) = rest.bytes().find(|b| *b != b'/' && !segment_char(*b)) {
            let what = match bad {
                b'%' => "percent-encoding is not allowed (write the characters themselves)".to_string(),
                b'*' => "wildcards are not allowed: a grant scope is a resource id, not a pattern".to_string(),
                b'?' | b'#' => "a query or fragment is not part of a resource id".to_string(),
                b'\\' => "backslashes are not path separators".to_string(),
                b if b.is_ascii_control() => "control characters are not allowed".to_string(),
                b if !b.is_ascii() => "only ASCII letters, digits and - _ . ( ) are allowed".to_string(),
                b => format!(
                    "`{}` is not allowed; segments use ASCII letters, digits and - _ . ( )",
                    b as char
                ),
            };
            return Err(refuse(text, what));
        }
        let count = rest.split('/').count();
        if count > MAX_RESOURCE_ID_SEGMENTS {
            return Err(refuse(
                text,
                format!("more than {MAX_RESOURCE_ID_SEGMENTS} segments ({count})"),
            ));
        }
        let mut segments = Vec::with_capacity(count);
        for segment in rest.split('/') {
            if segment.is_empty() {
                return Err(refuse(text, "empty segment (a doubled or trailing `/`)"));
            }
            if segment.bytes().all(|b| b == b'.') {
                return Err(refuse(text, "`.` and `..` segments are not allowed"));
            }
            if segment.ends_with('.') {
                return Err(refuse(text, format!("segment `{segment}` ends with `.`")));
            }
            if segment.len() > MAX_SEGMENT_BYTES {
                return Err(refuse(
                    text,
                    format!("a segment is longer than {MAX_SEGMENT_BYTES} bytes"),
                ));
            }
            segments.push(segment.to_string());
        }
        if segments.len() < 2 || !segments[0].eq_ignore_ascii_case("subscriptions") {
            return Err(refuse(text, "it must start with /subscriptions/{subscription id}"));
        }
        Ok(ResourceId { segments })
    }

    /// The segments as they were spelled, without separators.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The subscription id (the second segment).
    pub fn subscription(&self) -> &str {
        &self.segments[1]
    }

    /// The last segment (a resource's name, a collection or an action).
    pub fn last(&self) -> &str {
        self.segments.last().map(String::as_str).unwrap_or_default()
    }

    /// Whether `self` is `prefix` or lies under it, on whole segments, ignoring ASCII case.
    pub fn starts_with(&self, prefix: &ResourceId) -> bool {
        self.segments.len() >= prefix.segments.len()
            && self
                .segments
                .iter()
                .zip(&prefix.segments)
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
    }

    /// `self` with `tail` appended; each new segment is validated like a parsed one.
    pub fn child(&self, tail: &[&str]) -> Result<ResourceId, ResourceIdError> {
        let mut text = self.to_string();
        for t in tail {
            text.push('/');
            text.push_str(t);
        }
        ResourceId::parse(&text)
    }

    /// The id with its last segment removed, unless that would leave less than a subscription.
    pub fn parent(&self) -> Option<ResourceId> {
        (self.segments.len() > 2).then(|| ResourceId {
            segments: self.segments[..self.segments.len() - 1].to_vec(),
        })
    }

    /// Whether this is exactly `/subscriptions/{id}`.
    pub fn is_subscription(&self) -> bool {
        self.segments.len() == 2
    }

    /// Whether this names one resource of `provider_type` (e.g. `Microsoft.KeyVault/vaults`) in a
    /// resource group: `/subscriptions/s/resourceGroups/rg/providers/{namespace}/{type}/{name}`.
    pub fn is_resource_of(&self, provider_type: &str) -> bool {
        let Some((namespace, kind)) = provider_type.split_once('/') else {
            return false;
        };
        let s = &self.segments;
        s.len() == 8
            && s[2].eq_ignore_ascii_case("resourceGroups")
            && s[4].eq_ignore_ascii_case("providers")
            && s[5].eq_ignore_ascii_case(namespace)
            && s[6].eq_ignore_ascii_case(kind)
    }

    /// The ARM reading of the id: its resource type, whether it ends with a name, and a trailing
    /// segment that is a collection or an action.
    pub fn arm_path(&self) -> ArmPath {
        // Read left to right as ARM does: `subscriptions/{s}`, optionally `resourceGroups/{rg}`,
        // then `providers/{namespace}` followed by `{type}/{name}` pairs, where a `providers` in
        // a *type* position starts an extension resource (a role assignment under a vault). A
        // resource *named* `providers` is only a name.
        let s = &self.segments;
        let mut kind = "microsoft.resources/subscriptions".to_string();
        let mut i = 2;
        let mut named = true;
        let mut trailing = None;
        if s.len() > 2 && s[2].eq_ignore_ascii_case("resourceGroups") {
            kind = "microsoft.resources/resourcegroups".to_string();
            named = s.len() > 3;
            if !named {
                trailing = Some("resourcegroups".to_string());
            }
            i = 4;
        }
        while i < s.len() {
            if s[i].eq_ignore_ascii_case("providers") && i + 1 < s.len() {
                kind = s[i + 1].to_ascii_lowercase();
                named = false;
                i += 2;
                continue;
            }
            let t = s[i].to_ascii_lowercase();
            if i + 1 < s.len() {
                kind.push('/');
                kind.push_str(&t);
                named = true;
                i += 2;
            } else {
                trailing = Some(t);
                named = false;
                i += 1;
            }
        }
        ArmPath {
            resource_type: kind,
            named,
            trailing,
        }
    }
}

/// What an id means to Resource Manager (see [`ResourceId::arm_path`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmPath {
    /// Lowercase `namespace/type[/child type…]`, e.g. `microsoft.keyvault/vaults/keys`;
    /// `microsoft.resources/resourcegroups` for a resource group, and
    /// `microsoft.resources/subscriptions` for a subscription.
    pub resource_type: String,
    /// Whether the id ends with a resource's name (a PUT/PATCH/GET of one resource).
    pub named: bool,
    /// A last segment after the type/name pairs: a collection (GET) or an action (POST), lowercase.
    pub trailing: Option<String>,
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.segments {
            write!(f, "/{s}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

impl std::str::FromStr for ResourceId {
    type Err = ResourceIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ResourceId::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ResourceId {
        ResourceId::parse(s).unwrap()
    }

    #[test]
    fn non_canonical_spellings_are_refused() {
        for bad in [
            "/subscriptions/0000/resourceGroups/rg1/../rg2",
            "/subscriptions/0000/resourceGroups/rg1/%2e%2e/rg2",
            "/subscriptions/0000/resourceGroups/%72g1",
            "/subscriptions/0000//rg1",
            "/subscriptions/0000/resourceGroups/rg1/",
            "/subscriptions/0000/resourceGroups/rg1/.",
            "/subscriptions/0000/resourceGroups/rg1.",
            "/subscriptions/0000/resourceGroups/rg1\\..\\rg2",
            "/subscriptions/0000/resourceGroups/rg1?api-version=1",
            "/subscriptions/0000/resourceGroups/rg1#x",
            "/subscriptions/0000/resourceGroups/r\u{0131}g1",
            "/subscriptions/0000/resourceGroups/rg\u{0}",
            "/subscriptions/*",
            "/subscriptions",
            "subscriptions/0000",
            "/tenants/x",
            "",
        ] {
            assert!(ResourceId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn limits_are_checked_before_splitting() {
        let long = format!("/subscriptions/s{}", "/a".repeat(MAX_RESOURCE_ID_BYTES));
        let e = ResourceId::parse(&long).unwrap_err();
        assert!(e.reason.contains("longer than 2048"), "{e}");
        assert!(e.shown.len() < 200, "the error keeps the whole id: {}", e.shown.len());
        let many = format!("/subscriptions/s{}", "/a".repeat(MAX_RESOURCE_ID_SEGMENTS));
        assert!(ResourceId::parse(&many).unwrap_err().reason.contains("segments"));
    }

    #[test]
    fn coverage_is_on_whole_segments_ignoring_case() {
        let rg = id("/subscriptions/0000/resourceGroups/rg1");
        assert!(id("/SUBSCRIPTIONS/0000/resourcegroups/RG1/providers/Microsoft.KeyVault/vaults/kv").starts_with(&rg));
        assert!(!id("/subscriptions/0000/resourceGroups/rg10").starts_with(&rg));
        assert!(!id("/subscriptions/0000").starts_with(&rg));
        assert_eq!(id("/subscriptions/0000/resourceGroups/RG1"), rg);
    }

    #[test]
    fn arm_paths_name_their_type_and_trailing_segment() {
        let cluster = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks1";
        let p = id(cluster).arm_path();
        assert_eq!(p.resource_type, "microsoft.containerservice/managedclusters");
        assert!(p.named && p.trailing.is_none());
        let p = id(&format!("{cluster}/listClusterAdminCredential")).arm_path();
        assert_eq!(p.trailing.as_deref(), Some("listclusteradmincredential"));
        let p = id(&format!("{cluster}/accessProfiles/clusterAdmin/listCredential")).arm_path();
        assert_eq!(
            p.resource_type,
            "microsoft.containerservice/managedclusters/accessprofiles"
        );
        assert_eq!(p.trailing.as_deref(), Some("listcredential"));
        let p = id("/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv/providers/Microsoft.Authorization/roleAssignments/x").arm_path();
        assert_eq!(p.resource_type, "microsoft.authorization/roleassignments");
        let p = id("/subscriptions/s/resourceGroups/rg").arm_path();
        assert_eq!(p.resource_type, "microsoft.resources/resourcegroups");
        assert!(p.named);
        let p = id("/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/providers/accessProfiles/clusterAdmin").arm_path();
        assert_eq!(
            p.resource_type,
            "microsoft.containerservice/managedclusters/accessprofiles"
        );
        let p = id("/subscriptions/s").arm_path();
        assert_eq!(p.resource_type, "microsoft.resources/subscriptions");
        assert!(
            id("/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv")
                .is_resource_of("Microsoft.KeyVault/vaults")
        );
    }
}
