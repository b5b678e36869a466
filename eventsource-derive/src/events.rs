//! The `events(A, B, ...)` list shared by `#[aggregate]` and `#[projection]`: its model, the
//! rules it follows, and the const assertions over the listed events' stored identities.

use proc_macro2::{Ident, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote};

use crate::assert::const_assert;
use crate::ctxt::Ctxt;
use crate::krate::Krate;

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

/// Listed events are concrete types: what a list generates (an aggregate's event enum, a
/// projection's stored names) is not generic, so a listed type cannot name the item's own
/// generic parameters (`Tagged<T>`). `why` says what is not generic, for the message.
pub(crate) fn check_concrete(cx: &Ctxt, list: &EventList, input: &syn::DeriveInput, why: &str) {
    let generics = &input.generics;
    let types: Vec<&Ident> = generics
        .type_params()
        .map(|p| &p.ident)
        .chain(generics.const_params().map(|p| &p.ident))
        .collect();
    let lifetimes: Vec<&Ident> = generics.lifetimes().map(|l| &l.lifetime.ident).collect();
    if types.is_empty() && lifetimes.is_empty() {
        return;
    }
    for e in &list.events {
        let mut found = None;
        let example = concrete(e.ty.to_token_stream(), &types, &lifetimes, &mut found);
        if let Some(param) = found {
            let example = example.to_string().replace(' ', "");
            cx.error_spanned_by(
                &e.ty,
                format!(
                    "listed events must be concrete types: `{}` names `{param}`, a generic parameter of `{}` ({why}); list one concrete type, e.g. `{example}`",
                    e.text, input.ident
                ),
            );
        }
    }
}

/// `tokens` with every use of a generic parameter replaced by a concrete stand-in (`u32`,
/// `'static`); the first parameter found is recorded in `found`. Path segments after `::`
/// are not parameters (`events::T` is a type of module `events`).
fn concrete(
    tokens: TokenStream,
    types: &[&Ident],
    lifetimes: &[&Ident],
    found: &mut Option<String>,
) -> TokenStream {
    let mut out = Vec::new();
    let mut after_path_sep = false;
    let mut lifetime_tick = false;
    for tree in tokens {
        let (tree, path_sep, tick) = match tree {
            TokenTree::Group(g) => {
                let inner = concrete(g.stream(), types, lifetimes, found);
                let mut group = proc_macro2::Group::new(g.delimiter(), inner);
                group.set_span(g.span());
                (TokenTree::Group(group), false, false)
            }
            TokenTree::Ident(ident) if lifetime_tick && lifetimes.contains(&&ident) => {
                found.get_or_insert_with(|| format!("'{ident}"));
                (
                    TokenTree::Ident(Ident::new("static", ident.span())),
                    false,
                    false,
                )
            }
            TokenTree::Ident(ident)
                if !lifetime_tick && !after_path_sep && types.contains(&&ident) =>
            {
                found.get_or_insert_with(|| ident.to_string());
                (
                    TokenTree::Ident(Ident::new("u32", ident.span())),
                    false,
                    false,
                )
            }
            TokenTree::Punct(p) => {
                let sep = p.as_char() == ':'
                    && matches!(out.last(), Some(TokenTree::Punct(q)) if q.as_char() == ':');
                let tick = p.as_char() == '\'';
                (TokenTree::Punct(p), sep, tick)
            }
            other => (other, false, false),
        };
        out.push(tree);
        after_path_sep = path_sep;
        lifetime_tick = tick;
    }
    out.into_iter().collect()
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
