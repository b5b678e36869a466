//! The rules a `#[derive(DomainEvent)]` item must follow that the macro can see on its own.
//! Rules that need other items (the previous version's number) are const assertions the
//! expansion emits.

use crate::ctxt::Ctxt;
use crate::parse;

use super::ast::{Event, Older};

pub(crate) fn check(cx: &Ctxt, event: &Event<'_>) {
    check_item_kind(cx, event);
    check_name(cx, event);
    check_version(cx, event);
    check_aliases(cx, event);
    check_older(cx, event);
}

/// An event is a struct or an enum: a union has no serde representation.
fn check_item_kind(cx: &Ctxt, event: &Event<'_>) {
    parse::reject_union(cx, event.input, "DomainEvent", "use a struct or an enum");
}

/// The longest stored name (or alias), in bytes.
const MAX_NAME_LEN: usize = 255;

/// The stored name is 1 to 255 bytes of printable ASCII (`!` to `~`): it is a key in the store
/// and in log filters, read by people and other programs, so no whitespace, control or
/// non-ASCII characters.
fn check_name(cx: &Ctxt, event: &Event<'_>) {
    if !event.name_given {
        return; // already reported
    }
    if let Some(message) = stored_name_problem(&event.name.value(), "name") {
        cx.error_spanned_by(&event.name, message);
    }
}

/// What is wrong with a stored name given as `key` (`name` or `alias`), if anything.
fn stored_name_problem(value: &str, key: &str) -> Option<String> {
    let bad = value.chars().find(|c| !c.is_ascii_graphic());
    Some(match bad {
        _ if value.is_empty() => {
            if key == "name" {
                "the event `name` cannot be empty: it is the type name the store records".to_owned()
            } else {
                format!("an event `{key}` cannot be empty")
            }
        }
        Some(c) if c.is_whitespace() => format!(
            "an event `{key}` cannot contain whitespace: separate words with `.` or `_`, e.g. `account.opened`"
        ),
        Some(c) => format!(
            "`{}` cannot be in an event `{key}`: use printable ASCII (`!` to `~`), e.g. `account.opened`",
            c.escape_debug()
        ),
        None if value.len() > MAX_NAME_LEN => format!(
            "an event `{key}` has at most {MAX_NAME_LEN} bytes, this one has {}",
            value.len()
        ),
        None => return None,
    })
}

/// Schema versions start at 1.
fn check_version(cx: &Ctxt, event: &Event<'_>) {
    if let Some(lit) = &event.version_lit {
        if event.version == 0 {
            cx.error_spanned_by(
                lit,
                "event versions start at 1: use `version = 1` for the first shape",
            );
        }
    }
}

/// An alias follows the rule of names, differs from the name, and is given once.
fn check_aliases(cx: &Ctxt, event: &Event<'_>) {
    for (i, alias) in event.aliases.iter().enumerate() {
        let value = alias.value();
        if let Some(message) = stored_name_problem(&value, "alias") {
            cx.error_spanned_by(alias, message);
        } else if value == event.name.value() {
            cx.error_spanned_by(
                alias,
                "this `alias` is the event's own `name`: an alias is a former name",
            );
        } else if event.aliases[..i].iter().any(|a| a.value() == value) {
            cx.error_spanned_by(alias, format!("alias `{value}` is given twice"));
        }
    }
}

/// `previous` and `upcast_json` are two answers to one question (how do older versions
/// decode) and need an older version to exist, so `version` must be at least 2.
fn check_older(cx: &Ctxt, event: &Event<'_>) {
    if let Some(other) = &event.conflicting_older {
        cx.error_spanned_by(
            other,
            "`upcast_json` and `previous` cannot be combined: older versions decode either through the `previous` type or through the raw JSON function (put `upcast_json` on the oldest type instead)",
        );
    }
    let key = match &event.older {
        Older::None => return,
        Older::Previous { key, .. } | Older::UpcastJson { key, .. } => key,
    };
    if event.version < 2 {
        let key_name = key.get_ident().map(ToString::to_string).unwrap_or_default();
        cx.error_spanned_by(
            key,
            format!("`{key_name}` needs an older version to upcast from: set `version = 2` (or higher) on this event"),
        );
    }
}
