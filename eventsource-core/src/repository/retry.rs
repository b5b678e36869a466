//! How a command retries after losing a race ([`RetryPolicy`]), what it reports
//! ([`Executed`]), and [`Tries`]: the one place that counts its attempts.

use std::time::Duration;

use crate::envelope::Commit;

/// How [`Repository::execute`](crate::Repository::execute) goes on after its append lost a
/// race (a conflict: another writer appended first; or the stream was locked by a writer
/// running alone).
///
/// Commands of one repository (and its clones) on one stream never race each other: they
/// queue in the process. The races this policy is about are with other processes' writers.
/// A lost race is retried after a backoff with full jitter (each wait random between zero and
/// a cap that doubles from `base_delay` up to `max_delay`), with the state caught up. Retries
/// alone never guarantee progress: on a hot stream one command can lose every race while
/// others win. So after [`RetryPolicy::serialize_after`] lost races a command takes the
/// streams' writers' lock ([`EventStore::lock_streams`](crate::EventStore::lock_streams))
/// and decides again under it: every other append to those streams waits or fails
/// meanwhile, so this attempt cannot lose. Lockers are served in the order they asked, in a
/// process and across processes; so under any bounded load every command commits (or is
/// rejected by its own decision) in a bounded number of attempts. Contention costs
/// throughput, not commands.
///
/// The default: 16 attempts, backoff from 0.5 ms up to 50 ms, the lock after 3 lost races.
///
/// ```
/// # use eventsource_core::RetryPolicy;
/// # use std::time::Duration;
/// let fail_fast = RetryPolicy::no_retry(); // the first lost race is the error
/// let optimistic = RetryPolicy::optimistic(5); // 5 attempts, never the lock
/// let serialized = RetryPolicy::default().serialize_after(Some(0)); // always under the lock
/// let tuned = RetryPolicy::default()
///     .max_attempts(8)
///     .backoff(Duration::from_millis(1), Duration::from_millis(20));
/// # let _ = (fail_fast, optimistic, serialized, tuned);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1). Attempts under the lock count too.
    pub max_attempts: u32,
    /// The cap of the first backoff.
    pub base_delay: Duration,
    /// The largest cap.
    pub max_delay: Duration,
    /// After this many lost races the command runs under the streams' writers' lock (`None`:
    /// never; `Some(0)`: from its first attempt). Used only while attempts remain.
    pub serialize_after: Option<u32>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 16,
            base_delay: Duration::from_micros(500),
            max_delay: Duration::from_millis(50),
            serialize_after: Some(3),
        }
    }
}

impl RetryPolicy {
    /// Never retry: the first lost race is returned as
    /// [`CommandError::RetriesExhausted`](crate::CommandError::RetriesExhausted).
    pub fn no_retry() -> Self {
        Self::optimistic(1)
    }

    /// Retries with backoff only, never under the lock: `max_attempts` attempts in all, then
    /// [`CommandError::RetriesExhausted`](crate::CommandError::RetriesExhausted).
    pub fn optimistic(max_attempts: u32) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            serialize_after: None,
            ..Self::default()
        }
    }

    /// Sets the number of attempts in all (at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Sets the backoff's first and largest caps.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.base_delay = base;
        self.max_delay = max.max(base);
        self
    }

    /// Sets after how many lost races a command takes the writers' lock (`None`: never).
    pub fn serialize_after(mut self, lost: Option<u32>) -> Self {
        self.serialize_after = lost;
        self
    }

    /// The wait before attempt `lost + 1`, after `lost` lost races.
    fn backoff_after(&self, lost: u32) -> Duration {
        let cap = self
            .base_delay
            .saturating_mul(1u32 << lost.min(16))
            .min(self.max_delay);
        cap.mul_f64(fastrand::f64())
    }
}

/// What a command run through [`Repository::execute`](crate::Repository::execute) did: the
/// commit, and what it took to get there.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Executed {
    /// What was committed ([`Commit::empty`] when the decision had no events).
    pub commit: Commit,
    /// How many appends the command made (0 when its idempotency key had committed already,
    /// or its decision had no events).
    pub attempts: u32,
    /// How many of them lost a race (the stream had moved on, or was locked by a writer
    /// running alone).
    pub conflicts: u32,
    /// The time spent in backoff between attempts.
    pub backoff: Duration,
    /// Whether the last attempt ran under the streams' writers' lock.
    pub serialized: bool,
    /// The time spent waiting for that lock.
    pub lock_wait: Duration,
}

impl Executed {
    /// A command that appended nothing this time: `commit` is empty, or the first commit of
    /// its idempotency key.
    pub(super) fn without_attempts(commit: Commit) -> Self {
        Self {
            commit,
            attempts: 0,
            conflicts: 0,
            backoff: Duration::ZERO,
            serialized: false,
            lock_wait: Duration::ZERO,
        }
    }
}

/// What a command does after its append lost a race.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Catch up and decide again at once.
    Again,
    /// Wait this long, then catch up and decide again.
    Backoff(Duration),
    /// Take the writers' lock, catch up and decide again under it.
    Serialize,
    /// Give up: the attempts are spent.
    GiveUp,
}

/// How a lost race counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Loss {
    /// The stream had moved on from a state the command had read.
    Conflict,
    /// The stream had moved on from a state that came from the cache, unread: the command
    /// lost no race on a stream it had read, so this does not count against the policy.
    Unread,
    /// Another writer held the stream's writers' lock.
    Locked,
}

/// A command's attempts: the one place they are counted and the policy is applied.
#[derive(Debug)]
pub(super) struct Tries {
    policy: RetryPolicy,
    /// Appends made.
    appends: u32,
    /// Appends that lost a race.
    conflicts: u32,
    /// Appends that count against the policy (every append but the unread losses).
    counted: u32,
    backoff: Duration,
    lock_wait: Duration,
    serialized: bool,
}

impl Tries {
    pub(super) fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            appends: 0,
            conflicts: 0,
            counted: 0,
            backoff: Duration::ZERO,
            lock_wait: Duration::ZERO,
            serialized: false,
        }
    }

    /// Whether the first attempt already runs under the lock.
    pub(super) fn serialize_from_start(&self) -> bool {
        self.policy.serialize_after == Some(0) && self.policy.max_attempts >= 1
    }

    /// An append is about to be made.
    pub(super) fn appending(&mut self) {
        self.appends += 1;
        self.counted += 1;
    }

    /// The append just made lost a race: what to do next.
    pub(super) fn lost(&mut self, loss: Loss) -> Next {
        self.conflicts += 1;
        if loss == Loss::Unread {
            self.counted -= 1;
            return Next::Again;
        }
        if self.counted >= self.policy.max_attempts.max(1) {
            return Next::GiveUp;
        }
        if self.serialized {
            // Under the lock nobody else writes: the lock lost its hold (its session ended)
            // or the stream moved without it. Take it again; no point in waiting.
            self.serialized = false;
            return Next::Serialize;
        }
        // A stream locked by a writer running alone counts as any lost race: the lock is
        // held for one command, so a short backoff usually finds it free again, and the
        // writers of a hot stream stay optimistic (one round trip per command with the
        // cache) until one of them has lost often enough to need the lock itself.
        let lost = self.counted;
        let serialize = self.policy.serialize_after.is_some_and(|n| lost >= n);
        if serialize {
            return Next::Serialize;
        }
        let wait = self.policy.backoff_after(lost);
        self.backoff += wait;
        Next::Backoff(wait)
    }

    /// The lock was taken after `waited`.
    pub(super) fn locked(&mut self, waited: Duration) {
        self.serialized = true;
        self.lock_wait += waited;
    }

    /// The attempts counted against the policy.
    pub(super) fn counted(&self) -> u32 {
        self.counted
    }

    /// Appends made so far, lost races, backoff: for the command's span.
    pub(super) fn record(&self, span: &tracing::Span) {
        span.record("attempts", self.appends);
        span.record("conflicts", self.conflicts);
        span.record("backoff_us", self.backoff.as_micros() as u64);
        span.record("serialized", self.serialized);
    }

    /// The report of a command that committed `commit`.
    pub(super) fn executed(&self, commit: Commit) -> Executed {
        Executed {
            commit,
            attempts: self.appends,
            conflicts: self.conflicts,
            backoff: self.backoff,
            serialized: self.serialized,
            lock_wait: self.lock_wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_retry_gives_up_at_the_first_lost_race_even_when_locked_out() {
        for loss in [Loss::Conflict, Loss::Locked] {
            let mut tries = Tries::new(RetryPolicy::no_retry());
            tries.appending();
            assert_eq!(tries.lost(loss), Next::GiveUp);
        }
    }

    #[test]
    fn the_default_serializes_after_three_lost_races_within_its_attempts() {
        let mut tries = Tries::new(RetryPolicy::default());
        for _ in 0..2 {
            tries.appending();
            assert!(matches!(tries.lost(Loss::Conflict), Next::Backoff(_)));
        }
        tries.appending();
        assert_eq!(tries.lost(Loss::Conflict), Next::Serialize);
    }

    #[test]
    fn a_locked_stream_counts_as_a_lost_race_and_unread_losses_are_free() {
        let mut tries = Tries::new(RetryPolicy::default());
        for _ in 0..40 {
            tries.appending();
            assert_eq!(tries.lost(Loss::Unread), Next::Again);
        }
        assert_eq!(tries.counted(), 0);
        for _ in 0..2 {
            tries.appending();
            assert!(matches!(tries.lost(Loss::Locked), Next::Backoff(_)));
        }
        tries.appending();
        assert_eq!(tries.lost(Loss::Locked), Next::Serialize);
    }

    #[test]
    fn an_optimistic_policy_spends_its_attempts_and_never_serializes() {
        let mut tries = Tries::new(RetryPolicy::optimistic(4));
        let mut next = Vec::new();
        for _ in 0..4 {
            tries.appending();
            next.push(tries.lost(Loss::Locked));
        }
        assert!(next[..3].iter().all(|n| matches!(n, Next::Backoff(_))));
        assert_eq!(next[3], Next::GiveUp);
    }
}
