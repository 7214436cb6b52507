//! Makes `calls` reads of the checkpoint map: the cheapest host call, for the round-trip benchmark.
use kmsflow_sdk::{checkpoint, Error, Outputs, ParamSpec, Params, Plugin, PluginInfo};

struct Calls;

impl Plugin for Calls {
    fn describe() -> PluginInfo {
        kmsflow_sdk::info("test-calls", env!("CARGO_PKG_VERSION"), "Makes N host calls")
            .param(ParamSpec::integer("calls", "how many calls").default_integer(1))
            .output(ParamSpec::integer("hits", "calls that found a value"))
            .build()
    }

    fn run(params: Params) -> Result<Outputs, Error> {
        let n = params.integer("calls")?;
        let mut hits = 0;
        for _ in 0..n {
            if checkpoint::get("k").is_some() {
                hits += 1;
            }
        }
        Ok(Outputs::new().integer("hits", hits))
    }
}

kmsflow_sdk::plugin!(Calls);
