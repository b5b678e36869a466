//! `#[derive(Projection)]`: parse -> validate -> expand.

mod ast;
mod expand;
mod fallback;
mod validate;

use proc_macro2::TokenStream;

use crate::ctxt::Ctxt;

pub(crate) fn derive(input: &syn::DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let projection = ast::Projection::from_ast(&cx, input);
    validate::check(&cx, &projection);
    if cx.is_ok() {
        expand::expand(&projection)
    } else if projection.krate.found() {
        fallback::emit(cx, &projection)
    } else {
        // Stub impls could not name the runtime either.
        cx.into_compile_errors()
    }
}
