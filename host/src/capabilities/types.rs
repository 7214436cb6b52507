//! `kmsflow:workflow/types`: only the conversion of host errors into guest errors or traps.

use super::{CapabilityError, StepContext};
use crate::wit::types;

impl types::Host for StepContext {
    fn convert_error(&mut self, err: CapabilityError) -> wasmtime::Result<types::Error> {
        match err {
            CapabilityError::Guest(e) => Ok(e),
            CapabilityError::Trap(e) => Err(e),
        }
    }
}
