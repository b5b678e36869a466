//! Items the derive macros' generated code refers to. Not a public API: no stability promise.

pub use ::bytes::Bytes;
pub use ::core;
pub use ::serde;
pub use ::serde_json;
pub use ::std::boxed::Box;
pub use ::std::string::String;
pub use ::std::vec::Vec;
