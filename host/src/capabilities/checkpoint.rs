//! `kmsflow:workflow/checkpoint`: the step's private key/value map.
//!
//! Every change goes through `CallHooks::checkpoint` first — the journal writes and syncs it — so
//! `put` returns only once the value is durable, and `kmsflow resume` restores the map.

use super::{CapabilityError, StepContext, CHECKPOINT_KEY_MAX, CHECKPOINT_VALUE_MAX};
use crate::wit::checkpoint;
use crate::wit::types::ErrorKind;

fn check_sizes(key: &str, value: &str) -> Result<(), CapabilityError> {
    if key.is_empty() || key.len() > CHECKPOINT_KEY_MAX {
        return Err(CapabilityError::guest(
            ErrorKind::Invalid,
            "CheckpointKeyInvalid",
            format!("checkpoint keys are 1-{CHECKPOINT_KEY_MAX} bytes"),
        ));
    }
    if value.len() > CHECKPOINT_VALUE_MAX {
        return Err(CapabilityError::guest(
            ErrorKind::Invalid,
            "CheckpointValueTooLarge",
            format!("checkpoint values are at most {CHECKPOINT_VALUE_MAX} bytes"),
        ));
    }
    Ok(())
}

impl checkpoint::Host for StepContext {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.checkpoint.get(&key).cloned())
    }

    async fn put(&mut self, key: String, value: String) -> Result<(), CapabilityError> {
        check_sizes(&key, &value)?;
        self.hooks
            .checkpoint(&self.step, &key, Some(&value))
            .map_err(|e| CapabilityError::trap(wasmtime::Error::msg(format!("checkpoint not recorded: {e}"))))?;
        self.checkpoint.insert(key, value);
        Ok(())
    }

    async fn remove(&mut self, key: String) -> Result<(), CapabilityError> {
        if self.checkpoint.contains_key(&key) {
            self.hooks
                .checkpoint(&self.step, &key, None)
                .map_err(|e| CapabilityError::trap(wasmtime::Error::msg(format!("checkpoint not recorded: {e}"))))?;
            self.checkpoint.remove(&key);
        }
        Ok(())
    }
}
