//! Showing errors with their causes.

/// An error and its sources, `": "`-separated: what a log line or an error answer shows,
/// where the top error alone would hide the cause.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
