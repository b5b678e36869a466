//! `#[derive(Aggregate)]`: parse -> validate -> expand.

mod ast;
mod expand;
mod fallback;
mod validate;

use proc_macro2::TokenStream;

use crate::ctxt::Ctxt;

pub(crate) fn derive(input: &syn::DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let aggregate = ast::Aggregate::from_ast(&cx, input);
    validate::check(&cx, &aggregate);
    if cx.is_ok() {
        expand::expand(&aggregate)
    } else if aggregate.krate.found() {
        fallback::emit(cx, &aggregate)
    } else {
        // Stub impls could not name the runtime either.
        cx.into_compile_errors()
    }
}
