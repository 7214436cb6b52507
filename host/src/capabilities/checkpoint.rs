//! `kmsflow:workflow/checkpoint`: the step's private key/value map.
//!
//! Every change goes through `CallHooks::checkpoint` first — the journal writes and syncs it — so
//! `put` returns only once the value is durable, and `kmsflow resume` restores the map. A `put`
//! past the limits of [`crate::limits`] (key and value size, keys and bytes held) is an `invalid`
//! error and changes nothing.

use super::{CapabilityError, StepContext, CHECKPOINT_KEY_MAX, CHECKPOINT_VALUE_MAX};
use crate::limits::{CHECKPOINT_BYTES_MAX, CHECKPOINT_KEYS_MAX};
use crate::wit::checkpoint;
use crate::wit::types::ErrorKind;
use std::collections::BTreeMap;

fn invalid(code: &str, message: String) -> CapabilityError {
    CapabilityError::guest(ErrorKind::Invalid, code, message)
}

/// Refuses a `put` of `key = value` into `map` that breaks a limit: the key's and the value's
/// size, and the number of keys and bytes the map would hold afterwards.
fn check_put(map: &BTreeMap<String, String>, key: &str, value: &str) -> Result<(), CapabilityError> {
    if key.is_empty() || key.len() > CHECKPOINT_KEY_MAX {
        return Err(invalid(
            "CheckpointKeyInvalid",
            format!("checkpoint keys are 1-{CHECKPOINT_KEY_MAX} bytes"),
        ));
    }
    if value.len() > CHECKPOINT_VALUE_MAX {
        return Err(invalid(
            "CheckpointValueTooLarge",
            format!("checkpoint values are at most {CHECKPOINT_VALUE_MAX} bytes"),
        ));
    }
    let old = map.get(key);
    let keys = map.len() + usize::from(old.is_none());
    if keys > CHECKPOINT_KEYS_MAX {
        return Err(invalid(
            "CheckpointFull",
            format!("a step's checkpoint holds at most {CHECKPOINT_KEYS_MAX} keys; remove one first"),
        ));
    }
    let held: usize = map.iter().map(|(k, v)| k.len() + v.len()).sum();
    let after = held - old.map_or(0, |v| key.len() + v.len()) + key.len() + value.len();
    if after > CHECKPOINT_BYTES_MAX {
        return Err(invalid(
            "CheckpointFull",
            format!(
                "a step's checkpoint holds at most {CHECKPOINT_BYTES_MAX} bytes of keys and values \
                 (this put would make it {after})"
            ),
        ));
    }
    Ok(())
}

impl checkpoint::Host for StepContext {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.checkpoint.get(&key).cloned())
    }

    async fn put(&mut self, key: String, value: String) -> Result<(), CapabilityError> {
        check_put(&self.checkpoint, &key, &value)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<(), CapabilityError>) -> String {
        match r {
            Err(CapabilityError::Guest(e)) => e.code,
            other => panic!("expected a guest error, got {other:?}"),
        }
    }

    #[test]
    fn the_map_is_bounded_in_keys_and_bytes_but_a_key_may_be_rewritten() {
        let mut map = BTreeMap::new();
        for i in 0..CHECKPOINT_KEYS_MAX {
            map.insert(format!("k{i}"), String::new());
        }
        assert_eq!(code(check_put(&map, "one-more", "")), "CheckpointFull");
        assert!(check_put(&map, "k0", "rewritten").is_ok());

        let mut map = BTreeMap::new();
        let big = "x".repeat(CHECKPOINT_VALUE_MAX);
        let fit = CHECKPOINT_BYTES_MAX / (CHECKPOINT_VALUE_MAX + 3);
        for i in 0..fit {
            map.insert(format!("{i:03}"), big.clone());
        }
        assert_eq!(code(check_put(&map, "new", &big)), "CheckpointFull");
        assert!(check_put(&map, "000", &big).is_ok(), "a rewrite of the same size fits");
        assert_eq!(code(check_put(&map, "", "")), "CheckpointKeyInvalid");
    }
}
