//! kmsflow: sandboxed, resumable workflows that put AKS secrets under a customer-managed Key Vault
//! key and keep them there.
//!
//! This crate is both the `kmsflow` CLI and a library for platform teams who want the same runtime
//! inside their own service or operator: load a pipeline (or a single plugin), choose a
//! [`Target`], run it, and observe [`Event`]s as it goes. Plugins are WebAssembly components
//! that implement the `kmsflow:workflow` world (`wit/`); each step runs in a fresh sandbox that
//! can reach only the capabilities its grants allow.
//!
//! ```no_run
//! use kmsflow::{Event, Pipeline, RunOptions, Runtime, Target};
//! use std::sync::Arc;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::new()?;
//! let pipeline = Pipeline::from_file("workflows/check-key.toml")?;
//! let options = RunOptions {
//!     events: Arc::new(|event: &Event| println!("{event:?}")),
//!     ..RunOptions::default()
//! };
//! let report = runtime.run(&pipeline, &Target::offline(), &options).await?;
//! assert!(report.succeeded());
//! # Ok(()) }
//! ```
//!
//! A runnable version is `cargo run -p kmsflow --example embed`.
//!
//! # Features
//!
//! - `local-cloud` (default): links the local cloud (`kmsflow-localcloud`, an Azure + AKS
//!   emulator on axum, bundled SQLite, RSA and certificate generation) so that [`Target::local`]
//!   can start one in-process, and gives the CLI `local …` and `quickstart`. An embedder takes
//!   `kmsflow = { …, default-features = false }`: [`Target::local`] then connects only to a local
//!   cloud another process serves (through [`cloud::LocalProfile`]), and none of the emulator's
//!   dependencies are linked.

pub mod backend;
pub mod bench;
mod builtin;
pub mod capabilities;
pub mod cloud;
pub mod config;
pub mod engine;
mod error;
pub mod events;
pub mod grants;
pub mod journal;
pub mod limits;
pub mod names;
mod output;
pub mod pipeline;
pub mod plan;
mod plugin;
pub mod resource_id;
mod runtime;
pub mod shipped;
mod step;
pub mod target;
pub mod wit;

pub use backend::{Authorized, CloudBackend};
pub use builtin::test_plugin;
pub use error::Error;
pub use events::{Event, EventSink, LogLevel, LogSource};
pub use grants::{Action, Grant, Grants};
pub use limits::StepLimits;
pub use pipeline::{Pipeline, PipelineError, VarInputs};
pub use plugin::{sha256_hex, type_name as wit_type_name, Plugin, PluginOrigin};
pub use resource_id::ResourceId;
pub use runtime::{
    new_run_id, PreparedStep, ResumeState, RunOptions, RunReport, Runtime, RuntimeBuilder, StepReport, StepRun,
    StepStatus,
};
pub use step::{StepFailure, StepState};
pub use target::{Target, TargetSettings};
