//! The guest side of kmsflow: write a workflow plugin in a few dozen lines.
//!
//! A plugin is a `cdylib` crate compiled for `wasm32-wasip2`. It implements [`Plugin`] and
//! registers itself with [`plugin!`]; everything it can touch outside its own memory goes through
//! the capability modules re-exported here ([`aks`], [`keyvault`], …), each call checked by the
//! host against the step's grants.
//!
//! ```ignore
//! use kmsflow_sdk::{Plugin, Params, Outputs, PluginInfo, Error, ParamSpec};
//!
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn describe() -> PluginInfo {
//!         kmsflow_sdk::info("hello", env!("CARGO_PKG_VERSION"), "Greets someone")
//!             .param(ParamSpec::text("name", "who to greet").default_text("world"))
//!             .build()
//!     }
//!     fn run(params: Params) -> Result<Outputs, Error> {
//!         let name = params.text("name")?;
//!         kmsflow_sdk::log::info(&format!("hello, {name}"));
//!         Ok(Outputs::new().text("greeting", format!("hello, {name}")))
//!     }
//! }
//!
//! kmsflow_sdk::plugin!(Hello);
//! ```

// Lets the generated bindings name this crate by its public path, so that the `export` macro
// expands correctly inside plugin crates that depend only on this SDK.
extern crate self as kmsflow_sdk;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// The raw `wit-bindgen` bindings of the `kmsflow:workflow` world.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "workflow",
        pub_export_macro: true,
        export_macro_name: "__export_workflow",
        default_bindings_module: "kmsflow_sdk::bindings",
        runtime_path: "kmsflow_sdk::__wit_bindgen::rt",
    });
}

mod describe;
mod errors;
pub mod kms;
pub mod log;
mod params;
pub mod private;

pub use bindings::kmsflow::workflow::types::{
    Action, Error, ErrorKind, GrantRequest, Param, ParamSpec, PluginInfo, TextFormat, Value, ValueType,
};
pub use bindings::kmsflow::workflow::{aks, arm, checkpoint, identity, keyvault, kubernetes};
pub use describe::{info, InfoBuilder};
pub use errors::{error, ResultExt};
pub use params::{Outputs, Params};

/// A workflow plugin. `describe` must be pure (no capability calls); `run` performs the step.
pub trait Plugin {
    /// Name, version, parameter schema and the grants the plugin needs.
    fn describe() -> PluginInfo;
    /// Runs the step. Parameters were already checked by the host against `describe`.
    fn run(params: Params) -> Result<Outputs, Error>;
}

/// Registers `$plugin` (a type implementing [`Plugin`]) as the component's exports.
#[macro_export]
macro_rules! plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        struct __KmsflowGuest;

        impl $crate::bindings::Guest for __KmsflowGuest {
            fn describe() -> $crate::PluginInfo {
                <$plugin as $crate::Plugin>::describe()
            }

            fn run(
                params: ::std::vec::Vec<$crate::Param>,
            ) -> ::std::result::Result<::std::vec::Vec<$crate::Param>, $crate::Error> {
                <$plugin as $crate::Plugin>::run($crate::Params::from(params))
                    .map($crate::Outputs::into_params)
            }
        }

        $crate::bindings::__export_workflow!(__KmsflowGuest with_types_in $crate::bindings);
    };
}
