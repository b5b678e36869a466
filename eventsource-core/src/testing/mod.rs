//! Test support (feature `testing`): the store conformance suite and the given/when/then
//! harness for aggregates.

pub mod conformance;
pub mod harness;

pub use harness::given;
