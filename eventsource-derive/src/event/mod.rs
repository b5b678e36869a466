//! `#[derive(DomainEvent)]`: parse -> validate -> expand.

mod ast;
mod expand;
mod fallback;
mod validate;

use proc_macro2::TokenStream;

use crate::ctxt::Ctxt;

pub(crate) fn derive(input: &syn::DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let event = ast::Event::from_ast(&cx, input);
    validate::check(&cx, &event);
    if cx.is_ok() {
        expand::expand(&event)
    } else if event.krate.found() {
        fallback::emit(cx, &event)
    } else {
        // Stub impls could not name the runtime either.
        cx.into_compile_errors()
    }
}
