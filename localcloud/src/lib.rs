//! The local cloud: an Azure + AKS emulator on loopback (issues 3 and 4).
//!
//! Nothing is emulated yet; this crate reserves its place in the workspace so the layout of
//! design.md §2 holds from the first commit.
