//! The plugins compiled from `plugins/` by the build script and embedded in the binary.

mod generated {
    include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
}

/// Names of the built-in plugins, sorted.
pub fn names() -> impl Iterator<Item = &'static str> {
    generated::BUILTIN.iter().map(|(name, _)| *name)
}

/// The component bytes of built-in plugin `name`.
pub fn bytes(name: &str) -> Option<&'static [u8]> {
    generated::BUILTIN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

/// Paths of the test-only plugins (`plugins/testing/*`), for the test suite and benchmarks.
#[doc(hidden)]
pub fn test_plugin(name: &str) -> Option<&'static str> {
    generated::TEST_PLUGINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, path)| *path)
}
