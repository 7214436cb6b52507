//! Tries everything a sandboxed plugin must not be able to do and reports what happened. The test
//! passes real targets — a file that exists, a directory, a path to write, a port that listens on
//! 127.0.0.1 — so a refusal is the sandbox's denial, not a missing target.
use kmsflow_sdk::{Error, Outputs, ParamSpec, Params, Plugin, PluginInfo};

struct Sandbox;

fn outcome<T>(r: std::io::Result<T>) -> String {
    match r {
        Ok(_) => "allowed".to_string(),
        Err(e) => format!("refused: {e} [{:?}]", e.kind()),
    }
}

impl Plugin for Sandbox {
    fn describe() -> PluginInfo {
        kmsflow_sdk::info("test-sandbox", env!("CARGO_PKG_VERSION"), "Probes the sandbox")
            .param(ParamSpec::text("read_file", "a file that exists on the host").required())
            .param(ParamSpec::text("list_dir", "a directory that exists on the host").required())
            .param(ParamSpec::text("write_file", "a path the host could write").required())
            .param(ParamSpec::integer("port", "a port listening on the host's 127.0.0.1").required())
            .build()
    }

    fn run(params: Params) -> Result<Outputs, Error> {
        let port = u16::try_from(params.integer("port")?).map_err(|e| Error::invalid(e.to_string()))?;
        Ok(Outputs::new()
            .text("read_file", outcome(std::fs::read(params.text("read_file")?)))
            .text("list_dir", outcome(std::fs::read_dir(params.text("list_dir")?)))
            .text("write_file", outcome(std::fs::write(params.text("write_file")?, b"x")))
            .integer("env_vars", std::env::vars().count() as i64)
            .integer("args", std::env::args().count() as i64)
            .text("connect", outcome(std::net::TcpStream::connect(("127.0.0.1", port)))))
    }
}

kmsflow_sdk::plugin!(Sandbox);
