//! JSON encoding and decoding of payloads, shared by hand-written and derived code.

use bytes::Bytes;
use serde::Serialize;
use serde::de::Deserialize;

use crate::error::{DecodeError, EncodeError};

/// Encodes `value` as a JSON payload. `name` is the event type (or aggregate) for the error.
pub fn encode_json<T: Serialize + ?Sized>(name: &str, value: &T) -> Result<Bytes, EncodeError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|source| EncodeError::Serialize {
            name: name.to_owned(),
            source,
        })
}

/// Decodes a JSON payload stored as `name` with schema `version`.
pub fn decode_json<'de, T: Deserialize<'de>>(
    name: &str,
    version: u32,
    payload: &'de [u8],
) -> Result<T, DecodeError> {
    serde_json::from_slice(payload).map_err(|source| DecodeError::Payload {
        name: name.to_owned(),
        version,
        source,
    })
}

/// Parses a JSON payload into a [`serde_json::Value`], for raw upcasters of versions that have
/// no type of their own.
pub fn decode_value(
    name: &str,
    version: u32,
    payload: &[u8],
) -> Result<serde_json::Value, DecodeError> {
    decode_json(name, version, payload)
}

/// Decodes a [`serde_json::Value`] produced by a raw upcaster.
pub fn decode_from_value<T: serde::de::DeserializeOwned>(
    name: &str,
    version: u32,
    value: serde_json::Value,
) -> Result<T, DecodeError> {
    serde_json::from_value(value).map_err(|source| DecodeError::Payload {
        name: name.to_owned(),
        version,
        source,
    })
}
