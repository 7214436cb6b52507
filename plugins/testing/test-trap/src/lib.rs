//! Panics, which with `panic = "abort"` is a wasm trap.
use kmsflow_sdk::{Error, Outputs, Params, Plugin, PluginInfo};

struct Trap;

impl Plugin for Trap {
    fn describe() -> PluginInfo {
        kmsflow_sdk::info("test-trap", env!("CARGO_PKG_VERSION"), "Traps").build()
    }

    fn run(_: Params) -> Result<Outputs, Error> {
        let items: Vec<u32> = std::hint::black_box(Vec::new());
        // An out-of-bounds index: a panic, hence a trap.
        Ok(Outputs::new().integer("first", i64::from(items[0])))
    }
}

kmsflow_sdk::plugin!(Trap);
