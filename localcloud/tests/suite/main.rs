//! The local cloud's tests, driven over HTTPS only. One test binary (linking is the slow part
//! of a 2-core build); one module per surface.

mod common;

mod apiserver;
mod clusters;
mod credentials;
mod entra_and_arm;
mod fault_kinds;
mod faults_and_log;
mod keyvault;
mod kubectl;
mod lro_shapes;
mod operation_faults;
mod rbac;
mod strictness;
mod vault_provisioning;
