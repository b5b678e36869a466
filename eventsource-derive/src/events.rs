//! The `events(A, B, ...)` list shared by `#[aggregate]` and `#[projection]`: its model, the
//! rules it follows, and the const assertions over the listed events' stored identities.

use proc_macro2::{Span, TokenStream};
use quote::quote;

use crate::assert::const_assert;
use crate::ctxt::Ctxt;
use crate::parse::Krate;

/// One listed event type.
pub(crate) struct Listed {
    pub(crate) ty: syn::Type,
    /// The last path segment: the variant name in a generated enum.
    pub(crate) variant: syn::Ident,
    /// The type as the user wrote it, for messages.
    pub(crate) text: String,
}

impl Listed {
    /// Where errors about this event point: the type's name (its last path segment).
    pub(crate) fn span(&self) -> Span {
        self.variant.span()
    }
}

/// The `events(...)` list.
pub(crate) struct EventList {
    /// The parentheses, for an empty list.
    pub(crate) span: Span,
    pub(crate) events: Vec<Listed>,
}

impl EventList {
    /// Builds the list, reporting entries that are not type paths.
    pub(crate) fn new(cx: &Ctxt, span: Span, types: Vec<syn::Type>) -> Self {
        let mut events = Vec::with_capacity(types.len());
        for ty in types {
            let last = match &ty {
                syn::Type::Path(p) if p.qself.is_none() => {
                    p.path.segments.last().map(|s| s.ident.clone())
                }
                _ => None,
            };
            match last {
                Some(variant) => {
                    let text = quote!(#ty).to_string().replace(' ', "");
                    events.push(Listed { ty, variant, text });
                }
                None => cx.error_spanned_by(
                    &ty,
                    "expected an event type such as `Deposited` or `events::Deposited`",
                ),
            }
        }
        Self { span, events }
    }
}

/// The `EventType` of `ty`, as a struct literal over its consts: every mention of a listed type
/// is then a `<T as DomainEvent>` path, so a type that is not an event is reported once.
pub(crate) fn event_type(krate: &TokenStream, ty: &syn::Type) -> TokenStream {
    quote! {
        #krate::__private::EventType {
            name: <#ty as #krate::DomainEvent>::NAME,
            version: <#ty as #krate::DomainEvent>::VERSION,
            aliases: <#ty as #krate::DomainEvent>::ALIASES,
        }
    }
}

/// A list names at least one event (`attr` names the item kind, for the message).
pub(crate) fn check_not_empty(cx: &Ctxt, list: &EventList, attr: &str) {
    if list.events.is_empty() {
        cx.error_at(
            list.span,
            format!("`events()` is empty: list the event types this {attr} handles, e.g. `events(Opened, Deposited)`"),
        );
    }
}

/// An event type is listed once.
pub(crate) fn check_listed_once(cx: &Ctxt, list: &EventList) {
    for (i, e) in list.events.iter().enumerate() {
        if list.events[..i].iter().any(|f| f.text == e.text) {
            cx.error_spanned_by(
                &e.ty,
                format!("event `{}` is listed twice in `events(...)`", e.text),
            );
        }
    }
}

/// Stored (name, version) pairs of the listed events are distinct, and two listed events share
/// no stored name: decoding dispatches on the name, and older versions of one event are reached
/// through `previous`, never listed beside it. Checked by the compiler over the events' consts
/// (the text cannot tell that `Deposited` and `model::Deposited` are one type; the stored
/// identity does); the error lands on the second event of the pair.
pub(crate) fn identity_checks(krate: &Krate, list: &EventList, in_body: bool) -> TokenStream {
    let k = krate.call_site();
    let mut out = TokenStream::new();
    for (j, b) in list.events.iter().enumerate() {
        for a in &list.events[..j] {
            let (ea, eb) = (event_type(&k, &a.ty), event_type(&k, &b.ty));
            let (ta, tb) = (&a.ty, &b.ty);
            let same_version = quote! {
                !(#k::__private::names_overlap(#ea, #eb)
                    && <#ta as #k::DomainEvent>::VERSION == <#tb as #k::DomainEvent>::VERSION)
            };
            out.extend(const_assert(
                b.span(),
                same_version,
                &format!(
                    "`{}` and `{}` are the same event listed twice (one stored name and version): list it once (or, if they are two event types, give one of them another `name`)",
                    a.text, b.text
                ),
                in_body,
            ));
            let other_versions = quote! {
                !#k::__private::names_overlap(#ea, #eb)
                    || <#ta as #k::DomainEvent>::VERSION == <#tb as #k::DomainEvent>::VERSION
            };
            out.extend(const_assert(
                b.span(),
                other_versions,
                &format!(
                    "events `{}` and `{}` share a stored name: list only the newest version (older versions decode through its `previous`)",
                    a.text, b.text
                ),
                in_body,
            ));
        }
    }
    out
}
