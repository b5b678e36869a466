//! The guided tour of the account domain. [`run_walkthrough`] drives every feature once and
//! returns an [`AccountWalkthrough`]: the story to print, and the facts the tests check.

// Amounts are in cents, written `120_50` for 120.50.
#![allow(clippy::inconsistent_digit_grouping)]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use eventsource_core::prelude::*;
use eventsource_core::{
    CommandOptions, EncodeError, ExpectedVersion, NewEvent, ProjectionError, ReadUntil, StoreError,
    StreamWrite, codec,
};
use futures::TryStreamExt;
use parking_lot::{Condvar, Mutex};
use uuid::Uuid;

use super::commands::{AccountError, transfer_between};
use super::model::{Account, AccountOpened, DepositedV1};
use super::{Balance, Balances, Statement, StatementLine};
use crate::projections::start_in_memory;
use crate::request::Request;
use crate::story::{Story, cents};

/// How long the tour waits for a projection to catch up before calling it a failure.
const CATCH_UP: Duration = Duration::from_secs(10);

/// What the tour did and found: the story, and the facts behind it.
#[derive(Debug, Clone)]
pub struct AccountWalkthrough {
    /// The story to print.
    pub story: Story,
    /// Alice's account id (ids are unique per run, so runs can share a database).
    pub alice: String,
    /// Bob's account id.
    pub bob: String,
    /// Alice's version 1 deposit, as the aggregate sees it after the upcast, in cents.
    pub upcast_deposit_cents: i64,
    /// The commit of the transfer: both streams in one commit.
    pub transfer: Commit,
    /// The metadata the transfer's two events were recorded with.
    pub transfer_metadata: Vec<Metadata>,
    /// The two racing withdrawals from Bob's account.
    pub race: [RacingWithdrawal; 2],
    /// Alice's balance as of version 2 (time travel by version), in cents.
    pub alice_at_version_2_cents: i64,
    /// Alice's version and balance as of the time her second withdrawal was recorded.
    pub alice_at_time: (Version, i64),
    /// The version of Alice's newest snapshot.
    pub alice_snapshot_version: Option<Version>,
    /// Both accounts as the aggregates load them at the end.
    pub accounts: BTreeMap<String, Account>,
    /// Both accounts as the `balances` read model shows them at the end.
    pub balances: BTreeMap<String, Balance>,
    /// `balances` again, after a rebuild from the start of the log.
    pub balances_after_rebuild: BTreeMap<String, Balance>,
    /// Alice's statement.
    pub alice_statement: Vec<StatementLine>,
    /// The position of the last event the tour wrote.
    pub last_position: Position,
}

/// How one of the two concurrent withdrawals went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RacingWithdrawal {
    /// The amount asked for, in cents.
    pub amount_cents: i64,
    /// How many times its decision ran (2 means: it lost the race and decided again).
    pub decisions: u32,
    /// The version it committed, or why it was refused.
    pub outcome: Result<Version, AccountError>,
}

/// Why the tour stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalkthroughError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Loading an aggregate failed.
    #[error(transparent)]
    Load(#[from] eventsource_core::Error),
    /// A command failed for a reason other than the ones the tour expects.
    #[error(transparent)]
    Command(#[from] CommandError<AccountError>),
    /// A projection failed or did not catch up.
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    /// Seeding the old events failed.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A racing task died.
    #[error("a racing withdrawal did not finish: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Something the tour expects to be refused was accepted, or the other way round.
    #[error("the walkthrough went off script: {0}")]
    OffScript(String),
}

/// Runs the tour on `store`: seeds an old-format history, runs commands, races two
/// withdrawals, travels in time, shows a snapshot, feeds two read models and rebuilds one.
pub async fn run_walkthrough(store: AnyStore) -> Result<AccountWalkthrough, WalkthroughError> {
    let mut story = Story::default();
    let run = &Uuid::new_v4().simple().to_string()[..6];
    let (alice, bob) = (format!("alice-{run}"), format!("bob-{run}"));
    let accounts = Repository::<Account, _>::new(store.clone());

    // --- History written by an older version of the application -------------------------
    story.chapter("1. An old history, still in the store");
    let seeded = seed_version_1_history(&store, &alice).await?;
    let loaded = accounts.load(&alice).await?;
    story.say(format!(
        "Years ago, version 1 of the bank wrote two events to stream `{}` (global positions {} \
         to {}): `account.opened`, and `account.deposited` version 1, whose amount was a float: \
         {{\"amount\": 120.5}}.",
        Account::stream_id(&alice),
        seeded.first_position,
        seeded.position
    ));
    story.say(format!(
        "Today's code only knows version 2 (`amount_cents: i64`). Loading the account reads the \
         old event and upcasts it on the way in (`impl From<DepositedV1> for Deposited`): \
         balance {} at version {}. The stored event itself is never rewritten.",
        cents(loaded.state.balance_cents),
        loaded.version
    ));
    let upcast_deposit_cents = loaded.state.balance_cents;

    // --- Read models ----------------------------------------------------------------------
    let balances = Balances::default();
    let statement = Statement::default();
    let balances_handle = start_in_memory(&store, balances.clone()).await?;
    let statement_handle = start_in_memory(&store, statement.clone()).await?;

    // --- Commands -------------------------------------------------------------------------
    story.chapter("2. Commands: decide on the current state, record what happened");
    story.say(
        "The events of each command record the correlation id of the request it belongs to \
         and the command's own id as causation id (`CommandOptions`), so the log can answer \
         \"what did this request cause?\"",
    );
    let request = Request::new();
    let opened = accounts
        .execute_with(&bob, request.command("open"), |a| a.open("Bob"))
        .await?
        .commit;
    story.say(format!(
        "Open Bob's account: the repository loads the (empty) account, `Account::open` decides, \
         and `account.opened` is appended at version {} (global position {}).",
        version_of::<Account>(&opened, &bob),
        opened.position
    ));
    let deposit = accounts
        .execute_with(&alice, request.command("deposit"), |a| a.deposit(50_00))
        .await?
        .commit;
    story.say(format!(
        "Alice deposits {}: `account.deposited` version 2 lands at version {} of her stream.",
        cents(50_00),
        version_of::<Account>(&deposit, &alice)
    ));
    let withdrawal = accounts
        .execute_with(&alice, request.command("withdraw"), |a| a.withdraw(20_00))
        .await?
        .commit;
    let before_transfer = withdrawal
        .streams
        .first()
        .map(|s| s.last_recorded_at)
        .ok_or_else(|| off_script("a withdrawal committed no stream"))?;
    story.say(format!(
        "Alice withdraws {}: version {}.",
        cents(20_00),
        version_of::<Account>(&withdrawal, &alice)
    ));
    match accounts
        .execute_with(&alice, request.command("withdraw"), |a| {
            a.withdraw(1_000_00)
        })
        .await
    {
        Err(CommandError::Rejected(e @ AccountError::InsufficientFunds { .. })) => {
            story.say(format!(
                "Alice tries to withdraw {}: refused, \"{e}\". Nothing is written.",
                cents(1_000_00)
            ))
        }
        other => {
            return Err(off_script(format!(
                "an overdraft was not refused: {other:?}"
            )));
        }
    }

    let transfer_request = Request::new();
    let transfer = transfer_between(
        &accounts,
        &alice,
        &bob,
        100_00,
        transfer_request.command("transfer"),
    )
    .await?;
    story.say(format!(
        "Alice transfers {} to Bob: one command over two accounts. `execute_many` loads both, \
         decides a withdrawal and a deposit together, and appends both in one atomic commit \
         (positions {} to {}): either both accounts change or neither does. Both events carry \
         the correlation id {} of the request.",
        cents(100_00),
        transfer.first_position,
        transfer.position,
        transfer_request.correlation_id
    ));
    let transfer_metadata = recorded_metadata(&store, &transfer).await?;

    // --- Two withdrawals at the same time -------------------------------------------------
    story.chapter("3. Two withdrawals at the same moment: optimistic concurrency");
    let race = race_two_withdrawals(&accounts, &bob, 70_00).await?;
    story.say(format!(
        "Bob has {} and two withdrawals of {} arrive at once. Both load his account at the same \
         version and both decide \"yes\" (we hold each decision until the other is made, the \
         race two servers run into by chance; in one server, commands on one account queue \
         and never race).",
        cents(100_00),
        cents(70_00)
    ));
    for (i, w) in race.iter().enumerate() {
        let line = match &w.outcome {
            Ok(v) => format!(
                "Withdrawal {}: decided {}, committed at version {v}.",
                i + 1,
                if w.decisions == 1 {
                    "once".to_owned()
                } else {
                    format!("{} times", w.decisions)
                }
            ),
            Err(e) => format!(
                "Withdrawal {}: its append expected the version it had read, found a newer one \
                 (a conflict), so the repository reloaded the account and decided again: \
                 refused, \"{e}\" (decided {} times).",
                i + 1,
                w.decisions
            ),
        };
        story.say(line);
    }
    story.say("No lock was held while deciding, and Bob's balance never went below zero.");

    let close = Request::new();
    accounts
        .execute_with(&bob, close.command("close"), |a| a.close())
        .await?;
    let last = match accounts
        .execute_with(&bob, close.command("deposit"), |a| a.deposit(1_00))
        .await
    {
        Err(CommandError::Rejected(e @ AccountError::Closed)) => {
            story.say(format!(
                "Bob closes his account. A later deposit is refused: \"{e}\"."
            ));
            accounts.load(&bob).await?.position
        }
        other => {
            return Err(off_script(format!(
                "a closed account took money: {other:?}"
            )));
        }
    };

    // --- Time travel ----------------------------------------------------------------------
    story.chapter("4. Time travel: any past state, folded from the same events");
    let at_version_2 = accounts
        .load_at(&alice, At::Version(Version::new(2)))
        .await?;
    story.say(format!(
        "Alice's account as of version 2 (the old import): {}.",
        cents(at_version_2.state.balance_cents)
    ));
    let at_time = accounts.load_at(&alice, At::Time(before_transfer)).await?;
    story.say(format!(
        "As of {before_transfer} (her withdrawal of 20.00, before the transfer): {} at version {}.",
        cents(at_time.state.balance_cents),
        at_time.version
    ));

    // --- Snapshots ------------------------------------------------------------------------
    story.chapter("5. Snapshots: a shortcut, never the truth");
    let snapshot = store
        .load_snapshot(
            &Account::stream_id(&alice),
            Account::SNAPSHOT_VERSION,
            ReadUntil::End,
        )
        .await?;
    let now = accounts.load(&alice).await?;
    match &snapshot {
        Some(s) => story.say(format!(
            "`Account` takes a snapshot every {} events (`snapshot_every`). The transfer took \
             Alice's stream to version {}, so the repository stored her state at that version. \
             Loading her now starts from it and reads only the events after it: balance {} at \
             version {}. Delete every snapshot and the same events give the same state.",
            Account::SNAPSHOT_EVERY.unwrap_or_default(),
            s.version,
            cents(now.state.balance_cents),
            now.version
        )),
        None => story.say("No snapshot was written (see the logs for why)."),
    }

    // --- Read models ----------------------------------------------------------------------
    story.chapter("6. Read models: projections follow the log");
    balances_handle.wait_for(last, CATCH_UP).await?;
    statement_handle.wait_for(last, CATCH_UP).await?;
    let balances_now = pick(balances.all(), [&alice, &bob]);
    story.say(format!(
        "The `balances` projection has handled every event up to position {last} (we waited \
         for that position: read-your-writes):"
    ));
    for (id, b) in &balances_now {
        let closed = if b.account.closed { ", closed" } else { "" };
        story.say(format!(
            "  {id} ({}): {}{closed}",
            b.account.owner.as_deref().unwrap_or("?"),
            cents(b.account.balance_cents)
        ));
    }
    let alice_statement = statement.of(&alice);
    story.say(format!(
        "Alice's `statement` ({} lines):",
        alice_statement.len()
    ));
    for line in &alice_statement {
        story.say(format!(
            "  v{} @{:<10} {:<26} balance {:>7}   request {}",
            line.version,
            line.position.to_string(),
            describe(&line.entry),
            cents(line.balance_cents),
            line.correlation_id
                .map_or_else(|| "-".to_owned(), |id| id.to_string()[..8].to_owned())
        ));
    }

    // --- Rebuild --------------------------------------------------------------------------
    story.chapter("7. Rebuilding a read model from the log");
    // The runner's rebuild calls the projection's `reset` hook (`reset = Self::clear`), which
    // empties the read model, sets the checkpoint back to zero and replays the log.
    balances_handle.rebuild().await?;
    balances_handle.wait_for(last, CATCH_UP).await?;
    let balances_after_rebuild = pick(balances.all(), [&alice, &bob]);
    story.say(format!(
        "A read model is disposable: we threw `balances` away and replayed the log from \
         position zero. Same result: {}.",
        if balances_after_rebuild == balances_now {
            "identical"
        } else {
            "DIFFERENT"
        }
    ));
    story.say(
        "That is how a new read model is added to a running system, or a buggy one is fixed: \
         change the code, rebuild.",
    );

    balances_handle.shutdown().await?;
    statement_handle.shutdown().await?;
    let mut final_accounts = BTreeMap::new();
    for id in [&alice, &bob] {
        final_accounts.insert(id.clone(), accounts.load(id).await?.state);
    }
    Ok(AccountWalkthrough {
        story,
        alice,
        bob,
        upcast_deposit_cents,
        transfer,
        transfer_metadata,
        race,
        alice_at_version_2_cents: at_version_2.state.balance_cents,
        alice_at_time: (at_time.version, at_time.state.balance_cents),
        alice_snapshot_version: snapshot.map(|s| s.version),
        accounts: final_accounts,
        balances: balances_now,
        balances_after_rebuild,
        alice_statement,
        last_position: last,
    })
}

/// Writes what version 1 of the application wrote: an account opened, then a deposit in the
/// old float format. Raw [`NewEvent`]s appended to the store: today's code cannot write a
/// version 1 deposit any more, which is the point.
async fn seed_version_1_history(store: &AnyStore, alice: &str) -> Result<Commit, WalkthroughError> {
    let imported = Metadata::new().with_header("imported_from", "bank v1");
    let opened = AccountOpened {
        owner: "Alice".to_owned(),
    };
    let deposited = DepositedV1 { amount: 120.5 };
    let events = vec![
        NewEvent::new(
            AccountOpened::NAME,
            AccountOpened::VERSION,
            codec::encode_json(AccountOpened::NAME, &opened)?,
        ),
        NewEvent::new(
            DepositedV1::NAME,
            DepositedV1::VERSION,
            codec::encode_json(DepositedV1::NAME, &deposited)?,
        ),
    ];
    let events = events
        .into_iter()
        .map(|e| e.with_metadata(imported.clone()))
        .collect();
    let write = StreamWrite::new(Account::stream_id(alice), ExpectedVersion::NoStream, events);
    Ok(store.append(vec![write]).await?)
}

/// The metadata of every event of `commit`, as the store recorded it.
async fn recorded_metadata(store: &AnyStore, commit: &Commit) -> Result<Vec<Metadata>, StoreError> {
    let mut metadata = Vec::new();
    for written in &commit.streams {
        let until = ReadUntil::Version(written.last_version);
        let mut events = store.read_stream(&written.stream, written.first_version, until);
        while let Some(event) = events.try_next().await? {
            metadata.push(event.metadata);
        }
    }
    Ok(metadata)
}

/// Runs two withdrawals of `amount_cents` from `account` at the same time, each on its own
/// task and through a repository of its own (as two servers would: the commands of one
/// repository on one account queue in their process and never race each other), holding each
/// one's first decision until both are made.
async fn race_two_withdrawals(
    accounts: &Repository<Account, AnyStore>,
    account: &str,
    amount_cents: i64,
) -> Result<[RacingWithdrawal; 2], WalkthroughError> {
    let both_decided = Arc::new(Rendezvous::default());
    let racer = || {
        let accounts = Repository::<Account, AnyStore>::new(accounts.store().clone());
        let account = account.to_owned();
        let both_decided = Arc::clone(&both_decided);
        tokio::spawn(async move {
            let decisions = AtomicU32::new(0);
            let options: CommandOptions = Request::new().command("withdraw");
            let result = accounts
                .execute_with(&account, options, |a| {
                    if decisions.fetch_add(1, Ordering::SeqCst) == 0 {
                        both_decided.arrive();
                    }
                    a.withdraw(amount_cents)
                })
                .await;
            let outcome = match result {
                Ok(executed) => Ok(version_of::<Account>(&executed.commit, &account)),
                Err(CommandError::Rejected(e)) => Err(e),
                Err(e) => return Err(WalkthroughError::Command(e)),
            };
            Ok(RacingWithdrawal {
                amount_cents,
                decisions: decisions.load(Ordering::SeqCst),
                outcome,
            })
        })
    };
    let (first, second) = (racer(), racer());
    Ok([first.await??, second.await??])
}

/// Lets two racers meet: the first to arrive waits (up to five seconds) for the second.
///
/// A decision is synchronous, so waiting in one blocks its thread. On a multi-threaded runtime
/// the wait runs in [`tokio::task::block_in_place`], which hands the thread's other tasks (the
/// other racer, perhaps) to another worker first. A single-threaded runtime cannot host the
/// race at all: there the racers do not wait, and simply run one after the other.
#[derive(Default)]
struct Rendezvous {
    arrived: Mutex<u32>,
    all_here: Condvar,
}

impl Rendezvous {
    fn arrive(&self) {
        let flavor = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
        if let Ok(tokio::runtime::RuntimeFlavor::MultiThread) = flavor {
            tokio::task::block_in_place(|| self.wait_for_the_other());
        }
    }

    fn wait_for_the_other(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut arrived = self.arrived.lock();
        *arrived += 1;
        self.all_here.notify_all();
        while *arrived < 2 && !self.all_here.wait_until(&mut arrived, deadline).timed_out() {}
    }
}

/// The version `commit` gave aggregate `id`'s stream.
fn version_of<A: Aggregate>(commit: &Commit, id: &str) -> Version {
    commit
        .version_of(&A::stream_id(id))
        .unwrap_or(Version::ZERO)
}

fn pick(mut all: BTreeMap<String, Balance>, ids: [&String; 2]) -> BTreeMap<String, Balance> {
    all.retain(|id, _| ids.contains(&id));
    all
}

fn off_script(what: impl Into<String>) -> WalkthroughError {
    WalkthroughError::OffScript(what.into())
}

fn describe(entry: &super::Entry) -> String {
    match entry {
        super::Entry::Opened { owner } => format!("opened for {owner}"),
        super::Entry::Deposit { amount_cents } => format!("deposit     +{}", cents(*amount_cents)),
        super::Entry::Withdrawal { amount_cents } => {
            format!("withdrawal  -{}", cents(*amount_cents))
        }
        super::Entry::Closed => "closed".to_owned(),
    }
}

impl fmt::Display for AccountWalkthrough {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.story.fmt(f)
    }
}
