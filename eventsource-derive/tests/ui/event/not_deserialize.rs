use eventsource_core::DomainEvent;

#[derive(DomainEvent)]
#[event(name = "account.opened")]
struct Opened {
    owner: String,
}

fn main() {}
