//! End-to-end tests: the real kmsflow library and plugins, through the production clients, against
//! a local cloud on loopback. One test binary (linking is the slow part of a 2-core build).

// The local cloud's own test fixture (start a cloud, seed clusters, inspect), shared as source so
// both suites drive the emulator the same way.
#[path = "../../../localcloud/tests/suite/common/mod.rs"]
mod common;

mod arm_client;
mod attacks;
mod azure_backend;
mod bounds;
mod errors;
mod grants;
mod kubernetes;
mod output_and_cache;
mod sandbox_limits;
mod third_party;
mod workflows;
