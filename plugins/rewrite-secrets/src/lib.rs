//! `rewrite-secrets`: the procedure's `kubectl get secrets -A -o json | kubectl replace -f -`,
//! done as design.md §7 says — metadata-only pages, a no-op update per secret with its
//! `resourceVersion` as precondition (the host sends many at once), the continue token
//! checkpointed after every page so that a resumed step loses at most one page.
use kmsflow_sdk::{
    aks, checkpoint, kubernetes, log, Action, Error, ErrorKind, Outputs, ParamSpec, Params, Plugin, PluginInfo,
    ResultExt,
};

const TOKEN: &str = "continue";
const COUNTS: &str = "counts";

/// Running totals, kept in the checkpoint as `listed,rewritten,conflicts,gone`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    listed: u64,
    rewritten: u64,
    conflicts: u64,
    gone: u64,
}

impl Counts {
    fn parse(s: &str) -> Option<Counts> {
        let v: Vec<u64> = s.split(',').map(|p| p.parse().ok()).collect::<Option<_>>()?;
        match v[..] {
            [listed, rewritten, conflicts, gone] => Some(Counts {
                listed,
                rewritten,
                conflicts,
                gone,
            }),
            _ => None,
        }
    }

    fn encode(&self) -> String {
        format!("{},{},{},{}", self.listed, self.rewritten, self.conflicts, self.gone)
    }

    fn add(&mut self, page: &kubernetes::RewritePage) {
        self.listed += u64::from(page.listed);
        self.rewritten += u64::from(page.rewritten);
        self.conflicts += u64::from(page.conflicts);
        self.gone += u64::from(page.gone);
    }
}

struct RewriteSecrets;

impl Plugin for RewriteSecrets {
    fn describe() -> PluginInfo {
        kmsflow_sdk::info(
            "rewrite-secrets",
            env!("CARGO_PKG_VERSION"),
            "Re-encrypts every secret with the cluster's current KMS configuration (no secret data is read)",
        )
        .param(
            ParamSpec::text("cluster", "the managed cluster's resource id")
                .format(kmsflow_sdk::TextFormat::ClusterId)
                .required(),
        )
        .param(ParamSpec::integer("page-size", "secrets per listed page").default_integer(500))
        .output(ParamSpec::integer("listed", "secrets listed"))
        .output(ParamSpec::integer("rewritten", "no-op updates accepted"))
        .output(ParamSpec::integer(
            "conflicts",
            "secrets written by someone else meanwhile (so re-encrypted)",
        ))
        .output(ParamSpec::integer("gone", "secrets deleted meanwhile"))
        .output(ParamSpec::flag(
            "recorded",
            "whether the completion was recorded in the state ConfigMap",
        ))
        .grant(Action::Read, "read the cluster's KMS key and count its secrets")
        .grant(Action::SecretsRewrite, "send the no-op updates")
        .grant(
            Action::Kms,
            "record the completed rewrite in the cluster's state ConfigMap (rotate checks it)",
        )
        .build()
    }

    fn run(params: Params) -> Result<Outputs, Error> {
        let cluster = params.text("cluster")?;
        let page_size = u32::try_from(params.integer("page-size")?.clamp(1, 5000)).unwrap_or(500);
        let mut token = checkpoint::get(TOKEN).filter(|t| !t.is_empty());
        let mut counts = checkpoint::get(COUNTS)
            .and_then(|c| Counts::parse(&c))
            .unwrap_or_default();
        if token.is_some() {
            log::info(&format!("resuming the rewrite after {} secrets", counts.listed));
        }
        // The key the secrets are rewritten under: what the completion record will name.
        let key_id = aks::get_cluster(&cluster)
            .context("reading the cluster")?
            .kms
            .filter(|k| k.enabled)
            .map(|k| k.key_id)
            .unwrap_or_else(|| "none".to_string());
        let total = kubernetes::count_secrets(&cluster).context("counting secrets")?;
        log::info(&format!("rewriting {total} secrets of {cluster}"));
        loop {
            let page = kubernetes::rewrite_secrets_page(&cluster, token.as_deref(), page_size)
                .context("rewriting a page of secrets")?;
            counts.add(&page);
            log::progress("secrets", counts.listed, Some(total.max(counts.listed)));
            match page.next {
                Some(next) => {
                    checkpoint::put(COUNTS, &counts.encode())?;
                    checkpoint::put(TOKEN, &next)?;
                    token = Some(next);
                }
                None => break,
            }
        }
        // The listing is complete: a re-run of this step starts over (a new key change needs a
        // new rewrite), not from the last page.
        checkpoint::remove(TOKEN)?;
        checkpoint::remove(COUNTS)?;
        log::info(&format!(
            "rewrite complete: {} listed, {} rewritten, {} changed meanwhile, {} deleted meanwhile",
            counts.listed, counts.rewritten, counts.conflicts, counts.gone
        ));
        let recorded = record_completion(&cluster, &key_id)?;
        Ok(Outputs::new()
            .flag("recorded", recorded)
            .integer("listed", counts.listed as i64)
            .integer("rewritten", counts.rewritten as i64)
            .integer("conflicts", counts.conflicts as i64)
            .integer("gone", counts.gone as i64))
    }
}

/// Records on the cluster that every secret was rewritten under `key_id`, so a later rotation
/// knows the previous one completed. Without the `kms` grant, says so and goes on.
fn record_completion(cluster: &str, key_id: &str) -> Result<bool, Error> {
    let current = match kubernetes::get_state(cluster) {
        Ok(s) => s,
        Err(e) => return Err(e).context("reading the state ConfigMap"),
    };
    let mut data = current.map(|s| s.data).unwrap_or_default();
    data.retain(|(k, _)| k != "rewritten-key-id");
    data.push(("rewritten-key-id".into(), key_id.to_string()));
    match kubernetes::put_state(cluster, &data, None) {
        Ok(_) => Ok(true),
        Err(e) if e.kind == ErrorKind::Denied => {
            log::warn(&format!(
                "the rewrite is complete but was not recorded on the cluster ({}): grant `kms` on the cluster to this step so that `rotate` can tell",
                e.message
            ));
            Ok(false)
        }
        Err(e) => Err(e).context("recording the completed rewrite"),
    }
}

kmsflow_sdk::plugin!(RewriteSecrets);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_round_trip_through_the_checkpoint_encoding() {
        let c = Counts {
            listed: 10_000,
            rewritten: 9_990,
            conflicts: 7,
            gone: 3,
        };
        assert_eq!(Counts::parse(&c.encode()), Some(c));
        assert_eq!(Counts::parse("1,2,3"), None);
        assert_eq!(Counts::parse("a,b,c,d"), None);
    }
}
