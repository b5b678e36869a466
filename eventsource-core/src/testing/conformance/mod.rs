//! The store conformance suite: every invariant of the store contract as a public async test
//! function that any store runs from its own tests, through
//! [`conformance_tests!`](crate::conformance_tests). Its topics, and how a case is added:
//! [the store contract](crate::docs::store_contract#the-conformance-suite).

// An unlisted case is dead code: `forbid`, not `deny`, so no `allow` can hide one.
#![forbid(dead_code)]

mod appends;
mod dead_letter_store;
mod dead_letters;
mod idempotency;
mod input;
mod locks;
mod log;
mod projections;
mod repository;
mod snapshots_checkpoints;
mod streams;
mod support;
mod versions;

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
            dead_letter_store: [
                a_failure_written_twice_is_one_letter_with_two_attempts,
                a_resolved_letter_is_listed_only_with_resolved_ones,
                a_failure_after_resolution_makes_the_letter_pending_again,
                letters_are_paged_in_position_order_and_filtered_by_stream,
                a_nul_in_an_error_is_refused_and_nothing_of_the_call_is_written,
                the_letters_of_two_projections_are_separate,
                one_call_with_the_same_event_many_times_applies_its_changes_in_order,
            ],
            dead_letters: [
                a_poison_event_parks_its_stream_while_others_flow_and_a_retry_replays_it_in_order,
                a_skipped_event_is_a_durable_letter_and_a_discard_is_recorded,
                a_rebuild_fails_fast_on_a_poison_event_and_names_it,
                transient_errors_are_tried_again_then_go_to_the_policy,
                instances_named_at_run_time_keep_their_own_checkpoints_and_letters,
                an_undecodable_event_goes_through_the_failure_policy,
                one_letter_deep_in_a_parked_stream_is_found_by_its_event,
            ],
            versions: [
                version_steps_are_compare_and_set_and_a_sealed_checkpoint_never_moves,
                a_new_version_takes_over_while_readers_read_and_writers_write,
                an_interrupted_warm_up_or_switch_resumes_where_it_stopped,
                a_switch_given_up_leaves_the_old_version_serving,
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
                a_repeated_append_gets_its_first_commit_while_its_stream_is_locked,
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
                racing_repeats_of_one_idempotency_key_commit_once,
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
