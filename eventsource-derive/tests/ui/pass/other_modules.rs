//! Events, aggregate and projection in different modules, listed by path; `crate = "..."`
//! names a re-export of the runtime.
mod runtime {
    pub use eventsource_core::*;
}

mod events {
    pub mod account {
        use serde::{Deserialize, Serialize};
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, eventsource_core::DomainEvent)]
        #[event(name = "account.opened", crate = "crate::runtime")]
        pub struct Opened {
            pub owner: String,
        }
    }
}

mod model {
    use crate::events::account;
    use eventsource_core::{Aggregate, Apply};

    #[derive(Debug, Default, Aggregate)]
    #[aggregate(name = "account", events(account::Opened), event_enum = Happened, crate = "crate::runtime")]
    pub struct Account {
        pub owner: Option<String>,
    }

    impl Apply<account::Opened> for Account {
        fn apply(&mut self, e: &account::Opened) {
            self.owner = Some(e.owner.clone())
        }
    }
}

mod read {
    use eventsource_core::{Handle, HandlerError, Projection, RecordedEvent};

    #[derive(Default, Projection)]
    #[projection(name = "owners", events(crate::events::account::Opened))]
    pub struct Owners {
        pub names: Vec<String>,
    }

    impl Handle<crate::events::account::Opened> for Owners {
        async fn handle(
            &mut self,
            e: crate::events::account::Opened,
            _: &RecordedEvent,
            _: &mut (),
        ) -> Result<(), HandlerError> {
            self.names.push(e.owner);
            Ok(())
        }
    }
}

fn main() {
    use eventsource_core::{Aggregate, Projection};
    let e = model::Happened::from(events::account::Opened { owner: "ada".into() });
    let mut a = model::Account::default();
    a.apply_event(&e);
    assert_eq!(a.owner.as_deref(), Some("ada"));
    assert_eq!(read::Owners::NAME, "owners");
}
