//! Const assertions in generated code: checks over associated consts of other items (an
//! event's `VERSION`, its `NAME`) that only the compiler can evaluate, failing with our own
//! message at the user's token.

use proc_macro2::{Span, TokenStream};
use quote::quote_spanned;

/// Asserts `cond` at compile time, panicking with `message` at `span`.
///
/// Outside generics this is a `const _` item, evaluated by `cargo check`. Where the condition
/// names generic parameters it must be an inline `const { }` block inside a function body
/// (pass `in_body`), evaluated when that function is instantiated.
pub(crate) fn const_assert(
    span: Span,
    cond: TokenStream,
    message: &str,
    in_body: bool,
) -> TokenStream {
    // `panic!` takes a format string: keep the message literal.
    let message = message.replace('{', "{{").replace('}', "}}");
    let check = quote_spanned! {span=>
        if !(#cond) {
            ::core::panic!(#message)
        }
    };
    if in_body {
        quote_spanned! {span=>
            #[allow(clippy::panic)]
            const { #check };
        }
    } else {
        quote_spanned! {span=>
            #[allow(clippy::panic)]
            const _: () = #check;
        }
    }
}
