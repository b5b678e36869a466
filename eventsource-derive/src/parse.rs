//! Attribute parsing shared by the derives: walking `#[attr(key = value, ...)]`, slots that
//! flag duplicated keys, typed value parsers with messages in the user's syntax, "did you mean"
//! for misspelt keys, and the `crate = "..."` path.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::parse::{ParseStream, discouraged::Speculative};
use syn::punctuated::Punctuated;
use syn::{LitInt, LitStr, Token};

use crate::ctxt::Ctxt;
use crate::symbol::Symbol;

/// One attribute key's value, with the key's tokens (for spans) once set.
pub(crate) struct Slot<T> {
    attr: Symbol,
    key: Symbol,
    value: Option<(syn::Path, T)>,
}

impl<T> Slot<T> {
    pub(crate) fn new(attr: Symbol, key: Symbol) -> Self {
        Self {
            attr,
            key,
            value: None,
        }
    }

    /// Sets the value; a second setting is reported at its key.
    pub(crate) fn set(&mut self, cx: &Ctxt, key: &syn::Path, value: T) {
        if self.value.is_some() {
            cx.error_spanned_by(
                key,
                format!(
                    "duplicate `#[{}]` key `{}`: give it once",
                    self.attr, self.key
                ),
            );
        } else {
            self.value = Some((key.clone(), value));
        }
    }

    pub(crate) fn get(&self) -> Option<&T> {
        self.value.as_ref().map(|(_, v)| v)
    }

    pub(crate) fn take(self) -> Option<(syn::Path, T)> {
        self.value
    }
}

/// Walks every `#[name(...)]` attribute in `attrs`, calling `each` with the key and its
/// [`ParseNestedMeta`] for known keys. Unknown keys, malformed attributes and value errors are
/// reported into `cx` and parsing goes on with the next key, so every mistake shows at once.
pub(crate) fn parse_attrs(
    cx: &Ctxt,
    attrs: &[syn::Attribute],
    name: Symbol,
    keys: &[Symbol],
    mut each: impl FnMut(Symbol, &ParseNestedMeta<'_>) -> syn::Result<()>,
) -> Seen {
    let mut first = None;
    let mut keys_seen = Vec::new();
    let mut malformed = false;
    for attr in attrs.iter().filter(|a| a.path() == &name) {
        first.get_or_insert_with(|| {
            attr.path()
                .get_ident()
                .map_or_else(Span::call_site, |i| i.span())
        });
        if !matches!(attr.meta, syn::Meta::List(_)) {
            cx.error_spanned_by(attr, format!("expected `#[{name}(key = value, ...)]`"));
            malformed = true;
            continue;
        }
        let result = attr.parse_nested_meta(|meta| {
            let Some(key) = keys.iter().copied().find(|k| meta.path == *k) else {
                cx.error_spanned_by(&meta.path, unknown_key(name, &meta.path, keys));
                return skip_value(meta.input);
            };
            keys_seen.push(key);
            if let Err(error) = each(key, &meta) {
                cx.syn_error(error);
                return skip_value(meta.input);
            }
            Ok(())
        });
        if let Err(error) = result {
            cx.syn_error(error);
        }
    }
    Seen {
        span: first,
        keys: keys_seen,
        malformed,
    }
}

/// What [`parse_attrs`] saw: where the attribute is, and which keys were written (even with
/// a bad value, so a bad value is not also reported as a missing key).
pub(crate) struct Seen {
    /// The first attribute's name, for errors about missing keys.
    pub(crate) span: Option<Span>,
    keys: Vec<Symbol>,
    /// An attribute was not a list: its keys are unknown, so none is reported missing.
    malformed: bool,
}

impl Seen {
    pub(crate) fn has(&self, key: Symbol) -> bool {
        self.malformed || self.keys.contains(&key)
    }

    /// The value of a required key and whether it was given. When it was not, `missing` is
    /// reported at `span` (only if the attribute exists and the key was not written at all: a
    /// missing attribute, or a bad value, is reported already) and `placeholder` stands in.
    pub(crate) fn required<T>(
        &self,
        cx: &Ctxt,
        slot: Slot<T>,
        span: Span,
        missing: &str,
        placeholder: impl FnOnce() -> T,
    ) -> (T, bool) {
        let key = slot.key;
        match slot.take() {
            Some((_, value)) => (value, true),
            None => {
                if self.span.is_some() && !self.has(key) {
                    cx.error_at(span, missing);
                }
                (placeholder(), false)
            }
        }
    }
}

fn unknown_key(attr: Symbol, path: &syn::Path, keys: &[Symbol]) -> String {
    let found = path.to_token_stream().to_string().replace(' ', "");
    let expected = keys
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match did_you_mean(&found, keys) {
        Some(close) => format!(
            "unknown `#[{attr}]` key `{found}`: did you mean `{close}`? (expected one of {expected})"
        ),
        None => format!("unknown `#[{attr}]` key `{found}`, expected one of {expected}"),
    }
}

/// The known key closest to `found`, if it is close enough to be a typo.
pub(crate) fn did_you_mean(found: &str, keys: &[Symbol]) -> Option<&'static str> {
    keys.iter()
        .map(|k| (levenshtein(found, k.0), k.0))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3) && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// Consumes the rest of a key's value (up to the next top-level comma) after an error.
fn skip_value(input: ParseStream<'_>) -> syn::Result<()> {
    take_value_tokens(input).map(drop)
}

fn take_value_tokens(input: ParseStream<'_>) -> syn::Result<TokenStream> {
    let mut tokens = TokenStream::new();
    while !input.is_empty() && !input.peek(Token![,]) {
        tokens.extend([input.parse::<TokenTree>()?]);
    }
    Ok(tokens)
}

/// The `= value` part of `key = value`, or an error at the key if it is missing.
fn value<'a>(
    meta: &'a ParseNestedMeta<'_>,
    key: Symbol,
    example: &str,
) -> syn::Result<ParseStream<'a>> {
    if !meta.input.peek(Token![=]) {
        return Err(meta.error(format!("`{key}` expects a value: `{key} = {example}`")));
    }
    meta.value()
}

/// The error for a value of the wrong kind, spanned over the value the user wrote.
fn wrong_value(input: ParseStream<'_>, key: Symbol, what: &str, example: &str) -> syn::Error {
    let tokens = match take_value_tokens(input) {
        Ok(tokens) if !tokens.is_empty() => tokens,
        Ok(_) => return input.error(format!("`{key}` expects {what}, e.g. `{key} = {example}`")),
        Err(e) => return e,
    };
    syn::Error::new_spanned(
        tokens,
        format!("`{key}` expects {what}, e.g. `{key} = {example}`"),
    )
}

/// `key = "string"`.
pub(crate) fn lit_str(
    meta: &ParseNestedMeta<'_>,
    key: Symbol,
    example: &str,
) -> syn::Result<LitStr> {
    let input = value(meta, key, example)?;
    if input.peek(LitStr) {
        input.parse()
    } else {
        Err(wrong_value(input, key, "a string literal", example))
    }
}

/// `key = 42`, an integer that must fit `N`.
pub(crate) fn lit_int<N>(
    meta: &ParseNestedMeta<'_>,
    key: Symbol,
    example: &str,
) -> syn::Result<(N, LitInt)>
where
    N: std::str::FromStr,
    N::Err: std::fmt::Display,
{
    let input = value(meta, key, example)?;
    if !input.peek(LitInt) {
        return Err(wrong_value(input, key, "an integer literal", example));
    }
    let lit: LitInt = input.parse()?;
    match lit.base10_parse::<N>() {
        Ok(n) => Ok((n, lit)),
        Err(_) => Err(syn::Error::new_spanned(
            &lit,
            format!(
                "`{key}` is out of range: `{}` does not fit a `{}`",
                lit,
                std::any::type_name::<N>()
            ),
        )),
    }
}

/// `key = some::Type`.
pub(crate) fn ty(meta: &ParseNestedMeta<'_>, key: Symbol, example: &str) -> syn::Result<syn::Type> {
    let input = value(meta, key, example)?;
    if input.peek(LitStr) {
        return Err(wrong_value(input, key, "a type, not a string", example));
    }
    input.parse()
}

/// `key = some::path`.
pub(crate) fn path(
    meta: &ParseNestedMeta<'_>,
    key: Symbol,
    example: &str,
) -> syn::Result<syn::Path> {
    let input = value(meta, key, example)?;
    if input.peek(LitStr) {
        return Err(wrong_value(input, key, "a path, not a string", example));
    }
    input.parse()
}

/// `key = Ident`.
pub(crate) fn ident(
    meta: &ParseNestedMeta<'_>,
    key: Symbol,
    example: &str,
) -> syn::Result<syn::Ident> {
    let input = value(meta, key, example)?;
    if input.peek(syn::Ident) && !input.peek2(Token![::]) {
        input.parse()
    } else {
        Err(wrong_value(input, key, "an identifier", example))
    }
}

/// `key(a, b, c)`, returning the parenthesis span (for errors about the list) and the items.
pub(crate) fn list<T: syn::parse::Parse>(
    meta: &ParseNestedMeta<'_>,
    key: Symbol,
    example: &str,
) -> syn::Result<(Span, Vec<T>)> {
    if !meta.input.peek(syn::token::Paren) {
        return Err(meta.error(format!(
            "`{key}` expects a parenthesised list: `{key}{example}`"
        )));
    }
    let content;
    let paren = syn::parenthesized!(content in meta.input);
    let items = Punctuated::<T, Token![,]>::parse_terminated(&content)?;
    Ok((paren.span.join(), items.into_iter().collect()))
}

/// `key(A, b::C, D<u8>)`: a list of types. An entry that is not a type is reported at its
/// tokens and parsing goes on.
pub(crate) fn type_list(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    key: Symbol,
    example: &str,
) -> syn::Result<(Span, Vec<syn::Type>)> {
    if !meta.input.peek(syn::token::Paren) {
        return Err(meta.error(format!(
            "`{key}` expects a parenthesised list: `{key}{example}`"
        )));
    }
    let content;
    let paren = syn::parenthesized!(content in meta.input);
    let mut types = Vec::new();
    while !content.is_empty() {
        let fork = content.fork();
        match fork.parse::<syn::Type>() {
            Ok(ty) if fork.is_empty() || fork.peek(Token![,]) => {
                content.advance_to(&fork);
                types.push(ty);
            }
            _ => {
                let tokens = take_value_tokens(&content)?;
                cx.error_spanned_by(
                    tokens,
                    format!("expected an event type such as `Deposited` or `events::Deposited` in `{key}(...)`"),
                );
            }
        }
        if !content.is_empty() {
            content.parse::<Token![,]>()?;
        }
    }
    Ok((paren.span.join(), types))
}

/// `crate = "path"`: the runtime crate's path, for re-exports.
pub(crate) fn crate_path(meta: &ParseNestedMeta<'_>, key: Symbol) -> syn::Result<syn::Path> {
    let lit = lit_str(meta, key, "\"::eventsource_core\"")?;
    lit.parse::<syn::Path>().map_err(|_| {
        syn::Error::new_spanned(
            &lit,
            format!("`{key}` expects a path to the eventsource runtime, e.g. `{key} = \"::eventsource_core\"`"),
        )
    })
}

/// Reports a derive on a union (`what` says what to use instead): none of the derived traits
/// has a meaning for one, and serde cannot represent it.
pub(crate) fn reject_union(cx: &Ctxt, input: &syn::DeriveInput, derive: &str, what: &str) {
    if let syn::Data::Union(u) = &input.data {
        cx.error_spanned_by(
            u.union_token,
            format!("`{derive}` cannot be derived for a union: {what}"),
        );
    }
}

/// The generics of an impl, with `'a: 'static` added for every lifetime parameter (the traits
/// are `'static`) and `extra` predicates when there are type or const parameters.
pub(crate) fn impl_generics(generics: &syn::Generics, extra: &[TokenStream]) -> syn::Generics {
    let mut generics = generics.clone();
    let lifetimes: Vec<syn::Lifetime> = generics.lifetimes().map(|l| l.lifetime.clone()).collect();
    let generic =
        generics.type_params().next().is_some() || generics.const_params().next().is_some();
    let where_clause = generics.make_where_clause();
    for l in lifetimes {
        where_clause.predicates.push(syn::parse_quote!(#l: 'static));
    }
    if generic {
        for p in extra {
            where_clause.predicates.push(syn::parse_quote!(#p));
        }
    }
    generics
}
