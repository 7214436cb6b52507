//! Drives every `kubernetes` capability once and reports each outcome as text
//! (`ok:…` or `kind:code`), so tests can assert success paths and error mapping alike.
use kmsflow_sdk::{kubernetes, Action, Error, Outputs, ParamSpec, Params, Plugin, PluginInfo};

struct Kube;

fn outcome<T>(r: Result<T, Error>, ok: impl FnOnce(T) -> String) -> String {
    match r {
        Ok(v) => format!("ok:{}", ok(v)),
        Err(e) => format!("{}:{}", e.kind, e.code),
    }
}

impl Plugin for Kube {
    fn describe() -> PluginInfo {
        kmsflow_sdk::info(
            "test-kube",
            env!("CARGO_PKG_VERSION"),
            "Exercises the kubernetes capability",
        )
        .param(ParamSpec::text("cluster", "cluster id").required())
        .param(ParamSpec::text("state", "value to write under `rotation` in the state ConfigMap").default_text("1"))
        .param(ParamSpec::text("stale-version", "a resourceVersion to try a conditional write with").default_text(""))
        .grant(Action::Read, "cluster")
        .grant(Action::Kms, "state ConfigMap")
        .build()
    }

    fn run(params: Params) -> Result<Outputs, Error> {
        let cluster = params.text("cluster")?;
        let count = outcome(kubernetes::count_secrets(&cluster), |n| n.to_string());
        let pods = outcome(
            kubernetes::list_pods(&cluster, "kube-system", "app=konnectivity-agent"),
            |p| p.len().to_string(),
        );
        let before = outcome(kubernetes::get_state(&cluster), |s| match s {
            Some(s) => s.resource_version,
            None => "none".into(),
        });
        let data = vec![("rotation".to_string(), params.text("state")?)];
        let put = outcome(kubernetes::put_state(&cluster, &data, None), |s| s.resource_version);
        let conditional = match params.opt_text("stale-version")? {
            None => "skipped".to_string(),
            Some(stale) => outcome(kubernetes::put_state(&cluster, &data, Some(&stale)), |s| {
                s.resource_version
            }),
        };
        let after = outcome(kubernetes::get_state(&cluster), |s| {
            s.map(|s| {
                s.data
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
        });
        let rewrite = outcome(kubernetes::rewrite_secrets_page(&cluster, None, 10), |p| {
            format!("{}/{}", p.listed, p.rewritten)
        });
        Ok(Outputs::new()
            .text("count", count)
            .text("pods", pods)
            .text("before", before)
            .text("put", put)
            .text("conditional", conditional)
            .text("after", after)
            .text("rewrite", rewrite))
    }
}

kmsflow_sdk::plugin!(Kube);
