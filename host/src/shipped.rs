//! The pipelines kmsflow ships (`workflows/`), embedded in the library so that an installed
//! binary runs them by name: `kmsflow run rotate …` is `workflows/rotate.toml`.
//!
//! A shipped pipeline is written, with the fragments it includes, to a directory named after
//! the content hash of the whole set (under the user's data directory unless told otherwise), so
//! a run's journal can name a file that stays: `kmsflow resume` reloads the same pipeline, and a
//! newer kmsflow with other pipeline texts writes another directory instead of changing it.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Every shipped file: (path under `workflows/`, text).
pub const FILES: &[(&str, &str)] = &[
    ("check-key.toml", include_str!("../../workflows/check-key.toml")),
    ("disable.toml", include_str!("../../workflows/disable.toml")),
    (
        "enable-private.toml",
        include_str!("../../workflows/enable-private.toml"),
    ),
    (
        "enable-public-rbac.toml",
        include_str!("../../workflows/enable-public-rbac.toml"),
    ),
    ("enable-public.toml", include_str!("../../workflows/enable-public.toml")),
    ("migrate-v2.toml", include_str!("../../workflows/migrate-v2.toml")),
    ("quickstart.toml", include_str!("../../workflows/quickstart.toml")),
    (
        "rewrite-secrets.toml",
        include_str!("../../workflows/rewrite-secrets.toml"),
    ),
    ("rotate.toml", include_str!("../../workflows/rotate.toml")),
    ("status.toml", include_str!("../../workflows/status.toml")),
    (
        "switch-to-private.toml",
        include_str!("../../workflows/switch-to-private.toml"),
    ),
    (
        "switch-to-public.toml",
        include_str!("../../workflows/switch-to-public.toml"),
    ),
    (
        "fragments/cluster-vars.toml",
        include_str!("../../workflows/fragments/cluster-vars.toml"),
    ),
    (
        "fragments/enable-public-vars.toml",
        include_str!("../../workflows/fragments/enable-public-vars.toml"),
    ),
    (
        "fragments/rewrite.toml",
        include_str!("../../workflows/fragments/rewrite.toml"),
    ),
];

/// One shipped pipeline: its name (`rotate`) and the first comment line of its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipped {
    pub name: &'static str,
    pub summary: String,
}

/// The shipped pipelines (fragments excluded), by name.
pub fn list() -> Vec<Shipped> {
    FILES
        .iter()
        .filter(|(path, _)| !path.contains('/'))
        .map(|(path, text)| Shipped {
            name: path.trim_end_matches(".toml"),
            summary: text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix('#'))
                .unwrap_or_default()
                .trim()
                .to_string(),
        })
        .collect()
}

/// Whether `name` (`rotate`, or `rotate.toml`) is a shipped pipeline.
pub fn is_shipped(name: &str) -> bool {
    let file = format!("{}.toml", name.trim_end_matches(".toml"));
    FILES.iter().any(|(path, _)| *path == file)
}

/// The directory the shipped files go to under `base`: `workflows-{hash of every file}`.
pub fn dir_under(base: &Path) -> PathBuf {
    let mut hasher = Sha256::new();
    for (path, text) in FILES {
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
    }
    base.join(format!("workflows-{}", &hex::encode(hasher.finalize())[..16]))
}

/// The default base: the user's data directory (`~/.local/share/kmsflow`).
pub fn default_base() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("kmsflow"))
}

/// Writes the shipped files under `base` (once; an existing complete set is reused) and returns
/// the path of pipeline `name`.
pub fn materialize(base: &Path, name: &str) -> std::io::Result<PathBuf> {
    let dir = dir_under(base);
    for (path, text) in FILES {
        let file = dir.join(path);
        if std::fs::read_to_string(&file).is_ok_and(|t| t == *text) {
            continue;
        }
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &file)?;
    }
    Ok(dir.join(format!("{}.toml", name.trim_end_matches(".toml"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_set_is_the_workflows_directory() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows");
        let mut on_disk = Vec::new();
        for sub in ["", "fragments"] {
            for entry in std::fs::read_dir(root.join(sub)).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "toml") {
                    let name = path.file_name().unwrap().to_string_lossy().to_string();
                    on_disk.push(if sub.is_empty() { name } else { format!("{sub}/{name}") });
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk, "add new workflows to shipped::FILES");
    }

    #[test]
    fn every_shipped_pipeline_is_listed_and_materializes_with_its_fragments() {
        let names: Vec<&str> = list().iter().map(|s| s.name).collect();
        assert!(
            names.contains(&"rotate") && names.contains(&"enable-public"),
            "{names:?}"
        );
        assert!(!names.iter().any(|n| n.contains("fragments")));
        assert!(is_shipped("rotate") && is_shipped("rotate.toml") && !is_shipped("rotate2"));
        let base = tempfile::tempdir().unwrap();
        let path = materialize(base.path(), "enable-public").unwrap();
        assert!(path.is_file());
        assert!(path.parent().unwrap().join("fragments/rewrite.toml").is_file());
        assert_eq!(materialize(base.path(), "enable-public").unwrap(), path, "stable");
    }
}
