//! The input every store accepts: the shared request checks, so all stores accept and reject
//! the same strings, rejections as the same [`StoreError::InvalidRequest`]. The rules, and
//! why: [the store contract](crate::docs::store_contract#input).

use crate::envelope::StreamWrite;
use crate::error::StoreError;
use crate::ids::StreamId;
use crate::metadata::Metadata;

/// The longest stream id, event type name, checkpoint name or metadata header name, in bytes.
pub const MAX_NAME_BYTES: usize = 2048;

/// The longest metadata header value, in bytes.
pub const MAX_HEADER_VALUE_BYTES: usize = 65_536;

fn invalid(what: String) -> StoreError {
    StoreError::InvalidRequest(what)
}

/// The first characters of `s`, for a message.
fn shown(s: &str) -> String {
    let mut shown: String = s.chars().take(40).collect();
    if shown.len() < s.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

/// Checks a name (`what`: "stream id", "event type name", ...): non-empty, at most
/// [`MAX_NAME_BYTES`], no NUL.
pub fn check_name(what: &str, name: &str) -> Result<(), StoreError> {
    if name.is_empty() {
        return Err(invalid(format!("empty {what}")));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(invalid(format!(
            "{what} {} is {} bytes long, more than the {MAX_NAME_BYTES} a store takes",
            shown(name),
            name.len()
        )));
    }
    if name.contains('\0') {
        return Err(invalid(format!(
            "{what} {} contains a NUL character",
            shown(name)
        )));
    }
    Ok(())
}

/// Checks a stream id (see [`check_name`]).
pub fn check_stream(stream: &StreamId) -> Result<(), StoreError> {
    check_name("stream id", stream.as_str())
}

/// Checks every stream id.
pub fn check_streams(streams: &[StreamId]) -> Result<(), StoreError> {
    streams.iter().try_for_each(check_stream)
}

/// Checks a checkpoint (projection) name (see [`check_name`]).
pub fn check_checkpoint(name: &str) -> Result<(), StoreError> {
    check_name("checkpoint name", name)
}

/// The longest error text a dead letter keeps, in bytes; a longer one is cut at a character
/// boundary.
pub const MAX_ERROR_TEXT_BYTES: usize = 16 * 1024;

/// An error's text as a dead letter keeps it: NUL characters replaced, cut to
/// [`MAX_ERROR_TEXT_BYTES`].
pub fn error_text(text: &str) -> String {
    let mut end = text.len().min(MAX_ERROR_TEXT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].replace('\0', "\u{FFFD}")
}

/// Checks a write of dead letters: the projection name (see [`check_name`]), and each
/// letter's stream, type and error text (at most [`MAX_ERROR_TEXT_BYTES`], no NUL).
pub fn check_dead_letters(
    projection: &str,
    changes: &[crate::store::DeadLetterChange],
) -> Result<(), StoreError> {
    check_checkpoint(projection)?;
    for change in changes {
        if let crate::store::DeadLetterChange::Failed { event, error, .. } = change {
            check_stream(&event.stream)?;
            check_name("event type name", &event.event_type)?;
            if error.len() > MAX_ERROR_TEXT_BYTES || error.contains('\0') {
                return Err(invalid(format!(
                    "a dead letter's error text must be at most {MAX_ERROR_TEXT_BYTES} bytes with no NUL (see `input::error_text`)"
                )));
            }
        }
    }
    Ok(())
}

/// Checks a step of a switch between versions of projection `name`: the name, and the
/// checkpoint names of both versions (see [`version_key`](crate::store::version_key)), each
/// within the limits of names.
pub fn check_version_step(name: &str, step: &crate::store::VersionStep) -> Result<(), StoreError> {
    check_checkpoint(name)?;
    let (from, to) = step.versions();
    check_checkpoint(&crate::store::version_key(name, from))?;
    check_checkpoint(&crate::store::version_key(name, to))
}

/// Checks a listing of dead letters: the projection name and the query's stream.
pub fn check_dead_letter_query(
    projection: &str,
    query: &crate::store::DeadLetterQuery,
) -> Result<(), StoreError> {
    check_checkpoint(projection)?;
    query.stream.as_ref().map_or(Ok(()), check_stream)
}

/// Checks the event types of a log read's filter.
pub fn check_types(types: Option<&[&str]>) -> Result<(), StoreError> {
    types
        .unwrap_or_default()
        .iter()
        .try_for_each(|t| check_name("event type name", t))
}

/// Checks metadata: header names as names, header values up to [`MAX_HEADER_VALUE_BYTES`]
/// without NUL.
pub fn check_metadata(metadata: &Metadata) -> Result<(), StoreError> {
    for (name, value) in &metadata.headers {
        check_name("metadata header name", name)?;
        if value.len() > MAX_HEADER_VALUE_BYTES {
            return Err(invalid(format!(
                "metadata header {} has a value of {} bytes, more than the \
                 {MAX_HEADER_VALUE_BYTES} a store takes",
                shown(name),
                value.len()
            )));
        }
        if value.contains('\0') {
            return Err(invalid(format!(
                "metadata header {} has a value with a NUL character",
                shown(name)
            )));
        }
    }
    Ok(())
}

/// Checks the strings of an append: stream ids, type names and metadata.
pub fn check_writes(writes: &[StreamWrite]) -> Result<(), StoreError> {
    for w in writes {
        check_stream(&w.stream)?;
        for e in &w.events {
            check_name("event type name", &e.event_type)
                .map_err(|err| invalid(format!("event {}: {}", e.id, inner(err))))?;
            check_metadata(&e.metadata)
                .map_err(|err| invalid(format!("event {}: {}", e.id, inner(err))))?;
        }
    }
    Ok(())
}

fn inner(e: StoreError) -> String {
    match e {
        StoreError::InvalidRequest(what) => what,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_for_emptiness_length_in_bytes_and_nul() {
        assert!(check_name("stream id", "account-42").is_ok());
        assert!(
            check_name("stream id", &"é".repeat(1024)).is_ok(),
            "2,048 bytes"
        );
        assert!(
            check_name("stream id", &"\u{1F600}".repeat(500)).is_ok(),
            "500 four-byte chars"
        );
        assert!(check_name("stream id", &"a".repeat(2049)).is_err());
        assert!(check_name("stream id", "").is_err());
        assert!(check_name("stream id", "a\0b").is_err());
        let long = check_name("stream id", &"x".repeat(5000))
            .unwrap_err()
            .to_string();
        assert!(long.len() < 200, "the message shows the start only: {long}");
    }

    #[test]
    fn metadata_values_may_be_empty_but_not_hold_nul_or_exceed_the_limit() {
        let ok = Metadata::new().with_header("user", "");
        assert!(check_metadata(&ok).is_ok());
        assert!(check_metadata(&Metadata::new().with_header("user", "a\0")).is_err());
        assert!(check_metadata(&Metadata::new().with_header("", "x")).is_err());
        let big = "v".repeat(MAX_HEADER_VALUE_BYTES + 1);
        assert!(check_metadata(&Metadata::new().with_header("user", big)).is_err());
    }
}
