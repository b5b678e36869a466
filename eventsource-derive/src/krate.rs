//! The path generated code uses for the runtime crate: the `crate = "..."` path when given,
//! else `::<name>` for the name the user's Cargo.toml gives `eventsource-core`
//! (`::eventsource_core`, or `::es` after `es = { package = "eventsource-core" }`).

use proc_macro_crate::{Error, FoundCrate};
use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};

use crate::ctxt::Ctxt;

/// The runtime crate's package name, as dependencies name it.
const PACKAGE: &str = "eventsource-core";
/// Its name in code when nothing says otherwise.
const DEFAULT: &str = "eventsource_core";

/// Where generated code finds the runtime.
#[derive(Clone)]
pub(crate) struct Krate {
    path: Option<syn::Path>,
    /// The crate's name in the user's code, when no path was given.
    name: syn::Ident,
    /// Whether the runtime can be named at all (when not, only errors are emitted: stubs would
    /// each fail to find it).
    found: bool,
}

/// What the user's Cargo.toml says about the runtime.
#[derive(Debug, PartialEq)]
enum Lookup {
    /// A dependency, under this name (or the runtime itself, in its own tests and doctests).
    Named(String),
    /// The manifest was read, and no dependency is the runtime.
    Missing,
    /// No manifest to read (not built by Cargo) or one that does not parse: the default name.
    Unknown,
}

impl Krate {
    /// The path given with `crate = "..."`, or the one the user's Cargo.toml implies. A runtime
    /// that is no dependency at all is reported into `cx`.
    pub(crate) fn new(cx: &Ctxt, given: Option<syn::Path>) -> Self {
        let default = || syn::Ident::new(DEFAULT, Span::call_site());
        if given.is_some() {
            return Self {
                path: given,
                name: default(),
                found: true,
            };
        }
        let name = match lookup(proc_macro_crate::crate_name(PACKAGE)) {
            Lookup::Named(name) => syn::parse_str::<syn::Ident>(&name).ok(),
            Lookup::Unknown => None,
            Lookup::Missing => {
                cx.error_at(
                    Span::call_site(),
                    format!(
                        "`{PACKAGE}` is not a dependency of this crate: add it to `[dependencies]` in Cargo.toml, or name the path it is re-exported at with `crate = \"...\"`"
                    ),
                );
                return Self {
                    path: None,
                    name: default(),
                    found: false,
                };
            }
        };
        Self {
            path: None,
            name: name.unwrap_or_else(default),
            found: true,
        }
    }

    /// The path, spanned at `span` (so an error in the expression it starts lands there).
    pub(crate) fn at(&self, span: Span) -> TokenStream {
        match &self.path {
            Some(path) => quote!(#path),
            None => {
                let mut name = self.name.clone();
                name.set_span(span);
                quote_spanned!(span=> ::#name)
            }
        }
    }

    pub(crate) fn call_site(&self) -> TokenStream {
        self.at(Span::call_site())
    }

    /// Whether generated code can name the runtime (stub impls are useless otherwise).
    pub(crate) fn found(&self) -> bool {
        self.found
    }
}

fn lookup(found: Result<FoundCrate, Error>) -> Lookup {
    match found {
        Ok(FoundCrate::Name(name)) => Lookup::Named(name),
        // The runtime's own tests, doctests and examples link it under its own name.
        Ok(FoundCrate::Itself) => Lookup::Named(DEFAULT.to_owned()),
        Err(Error::CrateNotFound { .. }) => Lookup::Missing,
        Err(_) => Lookup::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renamed_dependency_is_named_as_renamed() {
        assert_eq!(
            lookup(Ok(FoundCrate::Name("es".into()))),
            Lookup::Named("es".into())
        );
        assert_eq!(
            lookup(Ok(FoundCrate::Itself)),
            Lookup::Named(DEFAULT.into())
        );
    }

    #[test]
    fn a_manifest_without_the_runtime_is_an_error_and_no_manifest_the_default() {
        let missing = Error::CrateNotFound {
            crate_name: PACKAGE.into(),
            path: "Cargo.toml".into(),
        };
        assert_eq!(lookup(Err(missing)), Lookup::Missing);
        assert_eq!(lookup(Err(Error::CargoManifestDirNotSet)), Lookup::Unknown);
        assert_eq!(
            lookup(Err(Error::NotFound("Cargo.toml".into()))),
            Lookup::Unknown
        );
    }

    #[test]
    fn generated_paths_use_the_name_found() {
        let cx = Ctxt::new();
        let krate = Krate {
            path: None,
            name: syn::Ident::new("es", Span::call_site()),
            found: true,
        };
        assert_eq!(krate.call_site().to_string(), ":: es");
        let given: syn::Path = syn::parse_quote!(crate::runtime);
        assert_eq!(
            Krate::new(&cx, Some(given)).call_site().to_string(),
            "crate :: runtime"
        );
        assert!(cx.is_ok());
    }
}
