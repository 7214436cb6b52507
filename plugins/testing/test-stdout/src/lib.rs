//! Writes to stdout and stderr through WASI.
use kmsflow_sdk::{Error, Outputs, Params, Plugin, PluginInfo};

struct Chatty;

impl Plugin for Chatty {
    fn describe() -> PluginInfo {
        kmsflow_sdk::info("test-stdout", env!("CARGO_PKG_VERSION"), "Prints").build()
    }

    fn run(_: Params) -> Result<Outputs, Error> {
        println!("hello from stdout");
        println!("second line");
        eprintln!("warning from stderr");
        Ok(Outputs::new())
    }
}

kmsflow_sdk::plugin!(Chatty);
