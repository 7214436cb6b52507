//! Tries everything a sandboxed plugin must not be able to do and reports what happened.
use kmsflow_sdk::{Error, Outputs, Params, Plugin, PluginInfo};

struct Sandbox;

fn outcome<T, E: std::fmt::Display>(r: Result<T, E>) -> String {
    match r {
        Ok(_) => "allowed".to_string(),
        Err(e) => format!("refused: {e}"),
    }
}

impl Plugin for Sandbox {
    fn describe() -> PluginInfo {
        kmsflow_sdk::info("test-sandbox", env!("CARGO_PKG_VERSION"), "Probes the sandbox").build()
    }

    fn run(_: Params) -> Result<Outputs, Error> {
        Ok(Outputs::new()
            .text("read_file", outcome(std::fs::read("/etc/hostname")))
            .text("list_dir", outcome(std::fs::read_dir(".")))
            .text(
                "write_file",
                outcome(std::fs::write("/tmp/kmsflow-sandbox-escape", b"x")),
            )
            .integer("env_vars", std::env::vars().count() as i64)
            .integer("args", std::env::args().count() as i64)
            .text("connect", outcome(std::net::TcpStream::connect("127.0.0.1:22"))))
    }
}

kmsflow_sdk::plugin!(Sandbox);
