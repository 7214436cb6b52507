//! Embedding kmsflow: run a pipeline from your own program and watch its events.
//!
//! `cargo run -p kmsflow --example embed` runs `workflows/check-key.toml`.
//!
//! It uses nothing of the local cloud, so your program can depend on the library without the
//! emulator (no axum, SQLite, RSA or certificate generation):
//!
//! ```toml
//! [dependencies]
//! kmsflow = { path = "…/kmsflow/host", default-features = false }
//! ```
//!
//! and `cargo run -p kmsflow --no-default-features --example embed` runs it that way.

use kmsflow::{Event, Pipeline, RunOptions, Runtime, Target};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = Runtime::new()?;
    let pipeline = Pipeline::from_file(concat!(env!("CARGO_MANIFEST_DIR"), "/../workflows/check-key.toml"))?;
    let options = RunOptions {
        events: Arc::new(|event: &Event| match event {
            Event::StepStarted { step, plugin, .. } => println!("step {step}: {plugin}"),
            Event::Log { step, message, .. } => println!("  {step}: {message}"),
            Event::StepFinished { step, ok, reason, .. } => {
                println!("step {step}: ok={ok} {}", reason.as_deref().unwrap_or(""))
            }
            _ => {}
        }),
        ..RunOptions::default()
    };
    let report = runtime.run(&pipeline, &Target::offline(), &options).await?;
    println!(
        "run {}: {}",
        report.run_id,
        if report.succeeded() { "succeeded" } else { "failed" }
    );
    Ok(())
}
