//! A plugin whose `describe()` answers 2,000 parameters with long descriptions: the host refuses
//! to load it instead of carrying (and printing, and journaling) whatever a plugin declares.
use kmsflow_sdk::{Error, Outputs, ParamSpec, Params, Plugin, PluginInfo};

struct HugeDescribe;

impl Plugin for HugeDescribe {
    fn describe() -> PluginInfo {
        let mut info = kmsflow_sdk::info("test-huge-describe", env!("CARGO_PKG_VERSION"), "Declares too much");
        let long = "x".repeat(1000);
        for i in 0..2000 {
            info = info.param(ParamSpec::text(&format!("p{i}"), &long));
        }
        info.build()
    }

    fn run(_params: Params) -> Result<Outputs, Error> {
        Ok(Outputs::new())
    }
}

kmsflow_sdk::plugin!(HugeDescribe);
