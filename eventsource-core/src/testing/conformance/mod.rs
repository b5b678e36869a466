//! The store conformance suite: every invariant of [`crate::store`] as a public async test
//! function that any store runs from its own tests. The in-memory store and PostgreSQL run the
//! same functions, unchanged.
//!
//! Each function takes a fresh, empty store and panics (through `assert!`) when the store breaks
//! the contract. Run them all with [`conformance_tests!`](crate::conformance_tests), which
//! expands to one `#[tokio::test]` per case, named for it:
//!
//! ```ignore
//! mod conformance {
//!     eventsource_core::conformance_tests!(|| async { eventsource_core::InMemoryStore::new() });
//! }
//! ```
//!
//! The factory is called once per test and must return a store that shares nothing with the
//! stores of other tests (for PostgreSQL: a fresh schema).
//!
//! # Layout
//!
//! The cases live in one private module per topic and are all published here, at
//! `testing::conformance::<case>`:
//!
//! | module | what its cases hold a store to |
//! | --- | --- |
//! | `streams` | versions without gaps, bounded stream reads, time travel, fold reads |
//! | `appends` | expected versions and conflicts, atomic multi-stream appends, commit positions, racing writers, the empty append |
//! | `idempotency` | the same batch again, reused event ids, partial repeats |
//! | `input` | malformed appends, the string limits, odd payloads and stream ids |
//! | `log` | `read_all` and page streams, events by id, waiting for events, a live subscriber |
//! | `snapshots_checkpoints` | snapshots by schema version and bound, checkpoints |
//! | `locks` | the writers' lock |
//! | `repository` | commands: retries, hot streams, rejections, snapshots, time travel, idempotency keys, metadata, several aggregates, undecodable events |
//! | `projections` | the projection runner: checkpoints, rebuilds, handler errors and panics |
//!
//! `support` holds the helpers several topics share.
//!
//! # Adding a case
//!
//! Write `pub async fn <behaviour><S: EventStore>(store: S)`, with a doc comment saying what a
//! store must do, in its topic's module, and add its name under that topic in the list in
//! `__conformance_cases!` (in this file). That one list both publishes the case here and gives
//! it a test in every store's suite, so a case cannot be written without being run: its topic
//! module is private, which leaves the list as the case's only way out, and this module forbids
//! dead code, so a case that is not listed stops the crate from building (``function `...` is
//! never used``). A name listed twice, under the wrong topic or never written does not build
//! either. A new topic is a new private module here and a new entry in the list.

// An unlisted case is dead code: `forbid`, not `deny`, so no `allow` can hide one.
#![forbid(dead_code)]

mod appends;
mod idempotency;
mod input;
mod locks;
mod log;
mod projections;
mod repository;
mod snapshots_checkpoints;
mod streams;
mod support;

// The hot-stream case reaches the contention harness as `super::contention`.
use super::contention;

crate::__conformance_cases!(publish);

/// Expands to one `#[tokio::test]` per conformance case, each with a store from `$make`
/// (a closure returning a future of a fresh store).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::__conformance_cases!(tests $make);
    };
}

/// The one list of conformance cases, by topic, handed to the arm its caller names: `tests`
/// for [`conformance_tests!`], `publish` for the `pub use` of every case in
/// `testing::conformance`. Not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    // The list, given to the arm named by the caller.
    ($arm:ident $($args:tt)*) => {
        $crate::__conformance_cases! { @$arm [$($args)*]
            streams: [
                versions_start_at_one_without_gaps,
                a_missing_stream_reads_empty,
                stream_reads_honour_from_and_until_version,
                time_travel_reads_return_the_recorded_prefix,
                fold_reads_agree_with_stream_reads,
            ],
            appends: [
                exact_version_conflict_writes_nothing,
                no_stream_conflict_writes_nothing,
                stream_exists_conflict_writes_nothing,
                any_version_appends_at_the_end,
                multi_stream_append_is_atomic,
                multi_stream_append_commits_every_stream,
                positions_increase_across_commits,
                racing_exact_appends_commit_one_and_conflict_the_rest,
                an_empty_append_is_a_no_op,
            ],
            idempotency: [
                the_same_batch_again_returns_the_first_commit,
                a_reused_event_id_with_other_content_is_rejected,
                a_partial_repeat_is_rejected,
                exact_appends_check_the_version_and_the_ids,
            ],
            input: [
                strings_outside_the_limits_are_rejected_alike_and_those_inside_round_trip,
                malformed_appends_are_rejected_and_write_nothing,
                payload_metadata_and_odd_stream_ids_round_trip,
            ],
            log: [
                read_all_pages_filters_and_reports_scanned_to,
                page_streams_agree_with_read_all_and_miss_nothing,
                events_are_found_by_id,
                waiting_for_events_wakes_on_append,
                concurrent_writers_and_a_live_subscriber_lose_nothing,
            ],
            snapshots_checkpoints: [
                snapshots_are_selected_by_schema_version_and_bound,
                snapshot_and_tail_reads_agree_with_their_two_reads,
                checkpoints_round_trip,
            ],
            locks: [
                the_writers_lock_excludes_every_other_appender_until_released,
                writers_locks_are_granted_in_the_order_asked,
                a_dropped_writers_lock_is_released,
            ],
            repository: [
                repository_retries_conflicts_until_every_command_commits,
                hot_stream_commands_never_give_up_and_none_starves,
                no_retry_still_fails_at_the_first_lost_race,
                repository_rejections_reach_the_caller_and_write_nothing,
                repository_uses_snapshots_and_ignores_bad_ones,
                a_snapshot_its_stream_does_not_hold_is_never_believed,
                repository_time_travel_by_version_and_time,
                idempotency_key_returns_the_first_commit,
                metadata_flows_into_recorded_events,
                multi_aggregate_command_commits_atomically,
                undecodable_events_are_typed_errors_naming_stream_version_and_type,
            ],
            projections: [
                projection_waits_checkpoints_and_rebuilds,
                projection_handler_error_stops_before_the_event,
                a_panicking_handler_is_a_typed_error_in_the_status_naming_the_event,
            ],
        }
    };
    // One test per case, in the caller's module, named for the case.
    (@tests [$make:expr] $($topic:ident: [$($case:ident),* $(,)?]),* $(,)?) => {
        $($(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let store = ($make)().await;
                $crate::testing::conformance::$case(store).await;
            }
        )*)*
    };
    // Every case at `testing::conformance::<case>`: its one way out of its private module.
    (@publish [] $($topic:ident: [$($case:ident),* $(,)?]),* $(,)?) => {
        $(pub use $crate::testing::conformance::$topic::{$($case),*};)*
    };
}
