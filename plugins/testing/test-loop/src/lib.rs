//! Spins forever without calling the host: only epoch interruption can stop it.
use kmsflow_sdk::{Error, Outputs, Params, Plugin, PluginInfo};

struct Spin;

impl Plugin for Spin {
    fn describe() -> PluginInfo {
        kmsflow_sdk::info("test-loop", env!("CARGO_PKG_VERSION"), "Loops forever").build()
    }

    fn run(_: Params) -> Result<Outputs, Error> {
        let mut x: u64 = 0;
        loop {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

kmsflow_sdk::plugin!(Spin);
