//! The given/when/then harness.
/// placeholder
pub fn given() {}
