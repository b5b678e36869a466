use eventsource_core::DomainEvent;

#[derive(DomainEvent)]
#[event(name = "account.opened")]
union Opened {
    a: u32,
    b: f32,
}

fn main() {}
