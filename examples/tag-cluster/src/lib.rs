//! `tag-cluster`: merges tags into a managed cluster's `tags` with one ARM PATCH — the kind of
//! small, team-specific step a platform team adds to a shared pipeline. It uses only the generic
//! `arm` capability, so its step needs nothing but `write` on the cluster.
use kmsflow_sdk::{arm, log, Action, Error, Outputs, ParamSpec, Params, Plugin, PluginInfo, ResultExt};

struct TagCluster;

/// `["team=platform", "cost-center=42"]` → `{"team":"platform","cost-center":"42"}`, escaped.
fn tags_json(pairs: &[String]) -> Result<String, Error> {
    let mut out = Vec::new();
    for pair in pairs {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| Error::invalid(format!("tag `{pair}` is not NAME=VALUE")))?;
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        out.push(format!("\"{}\":\"{}\"", esc(k.trim()), esc(v.trim())));
    }
    Ok(format!("{{\"tags\":{{{}}}}}", out.join(",")))
}

impl Plugin for TagCluster {
    fn describe() -> PluginInfo {
        kmsflow_sdk::info("tag-cluster", env!("CARGO_PKG_VERSION"), "Puts tags on an AKS cluster")
            .param(ParamSpec::text("cluster", "the managed cluster's resource id").required())
            .param(ParamSpec::text_list("tags", "NAME=VALUE pairs").required())
            .param(ParamSpec::text("api-version", "managed clusters api-version").default_text("2026-01-01"))
            .output(ParamSpec::integer("status", "the HTTP status of the PATCH"))
            .grant(Action::Write, "PATCH the cluster's tags")
            .build()
    }

    fn run(params: Params) -> Result<Outputs, Error> {
        let cluster = params.text("cluster")?;
        let body = tags_json(&params.text_list("tags")?)?;
        let reply = arm::request(arm::Method::Patch, &cluster, &params.text("api-version")?, Some(&body))
            .context("tagging the cluster")?;
        log::info(&format!("tagged {cluster}: {body}"));
        Ok(Outputs::new().integer("status", i64::from(reply.status)))
    }
}

kmsflow_sdk::plugin!(TagCluster);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_become_a_merge_body() {
        assert_eq!(
            tags_json(&["team=platform".into(), "note=a \"b\"".into()]).unwrap(),
            r#"{"tags":{"team":"platform","note":"a \"b\""}}"#
        );
        assert!(tags_json(&["oops".into()]).is_err());
    }
}
