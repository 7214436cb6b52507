//! Allocates and touches 1 MiB chunks until the host's memory cap stops it.
use kmsflow_sdk::{Error, Outputs, Params, Plugin, PluginInfo};

struct Hungry;

impl Plugin for Hungry {
    fn describe() -> PluginInfo {
        kmsflow_sdk::info("test-oom", env!("CARGO_PKG_VERSION"), "Grows memory without bound").build()
    }

    fn run(_: Params) -> Result<Outputs, Error> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![0xA5; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

kmsflow_sdk::plugin!(Hungry);
