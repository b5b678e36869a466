//! The rules a `#[derive(Projection)]` item must follow that the macro can see on its own.
//! Rules over the listed events' identities are const assertions in the expansion.

use crate::ctxt::Ctxt;
use crate::events;
use crate::parse;

use super::ast::Projection;

pub(crate) fn check(cx: &Ctxt, projection: &Projection<'_>) {
    check_item_kind(cx, projection);
    check_name(cx, projection);
    if projection.events_given {
        events::check_not_empty(cx, &projection.events, "projection");
    }
    events::check_listed_once(cx, &projection.events);
    events::check_concrete(
        cx,
        &projection.events,
        projection.input,
        "the events it handles are the same for every instance",
    );
}

/// A projection is a struct or an enum.
fn check_item_kind(cx: &Ctxt, projection: &Projection<'_>) {
    parse::reject_union(
        cx,
        projection.input,
        "Projection",
        "use a struct or an enum for the read model",
    );
}

/// The name keys the checkpoint: it cannot be empty.
fn check_name(cx: &Ctxt, projection: &Projection<'_>) {
    if projection.name_given && projection.name.value().trim().is_empty() {
        cx.error_spanned_by(
            &projection.name,
            "the projection `name` cannot be empty: it is the key of its checkpoint",
        );
    }
}
