//! A hostile plugin: sends the host far more than it should accept, in the way `mode` says.
//!
//! - `outputs-count`: returns `count` integer outputs;
//! - `outputs-bytes`: returns one text output of `size` bytes;
//! - `error-flood`: fails with a code and a message of `size` bytes each;
//! - `log-flood`: writes `count` lines of `size` bytes through `log.log`, stdout and stderr in
//!   turn, and `count` progress updates with a label of `size` bytes;
//! - `checkpoint-flood`: puts `count` distinct keys with values of `size` bytes, failing with the
//!   first refusal.
use kmsflow_sdk::{checkpoint, log, Error, Outputs, ParamSpec, Params, Plugin, PluginInfo};

struct Flood;

impl Plugin for Flood {
    fn describe() -> PluginInfo {
        kmsflow_sdk::info("test-flood", env!("CARGO_PKG_VERSION"), "Floods the host")
            .param(ParamSpec::text("mode", "what to flood the host with").required())
            .param(ParamSpec::integer("count", "how many items").default_integer(1))
            .param(ParamSpec::integer("size", "bytes per item").default_integer(1))
            .build()
    }

    fn run(params: Params) -> Result<Outputs, Error> {
        let mode = params.text("mode")?;
        let count = params.integer("count")?.max(0) as usize;
        let size = params.integer("size")?.max(0) as usize;
        let text = "x".repeat(size);
        match mode.as_str() {
            "outputs-count" => Ok((0..count).fold(Outputs::new(), |o, i| o.integer(&format!("o{i}"), i as i64))),
            "outputs-bytes" => Ok(Outputs::new().text("big", text)),
            "error-flood" => Err(kmsflow_sdk::error(
                kmsflow_sdk::ErrorKind::Internal,
                &text,
                text.clone(),
            )),
            "log-flood" => {
                for i in 0..count {
                    match i % 3 {
                        0 => log::info(&text),
                        1 => println!("{text}"),
                        _ => eprintln!("{text}"),
                    }
                    log::progress(&text, i as u64, None);
                }
                Ok(Outputs::new().integer("written", count as i64))
            }
            "checkpoint-flood" => {
                for i in 0..count {
                    checkpoint::put(&format!("key-{i}"), &text).map_err(|e| Error {
                        message: format!("put {i} refused: {}", e.message),
                        ..e
                    })?;
                }
                Ok(Outputs::new().integer("put", count as i64))
            }
            other => Err(Error::invalid(format!("unknown mode `{other}`"))),
        }
    }
}

kmsflow_sdk::plugin!(Flood);
