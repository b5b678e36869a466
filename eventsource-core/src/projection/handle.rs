//! [`ProjectionHandle`]: how a caller sees and steers a spawned runner ([`ProjectionStatus`],
//! `wait_for`, `rebuild`, `shutdown`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::ProjectionError;
use crate::ids::{EventId, Position, StreamId};

/// The state of a running projection, as its [`ProjectionHandle`] sees it.
#[derive(Clone, Debug, Default)]
pub struct ProjectionStatus {
    /// Every event at or before this position has been handled (or was not of a handled type).
    pub checkpoint: Position,
    /// Whether the last read found nothing new (the projection is following live).
    pub caught_up: bool,
    /// Whether this runner is the one running the projection: always, once started, on a
    /// store whose runners need no lease (the in-memory store); on PostgreSQL only while it
    /// holds the projection's lease (the others stand by), and never while it has lost its
    /// lease's session.
    pub leader: bool,
    /// Set while the runner waits out a transient fault (a lost connection, a server
    /// restarting): the error it met, which it will try again after. Cleared once a batch
    /// goes through. The runner does not stop for these.
    pub retrying: Option<Arc<ProjectionError>>,
    /// Set when the projection stopped on an error.
    pub failed: Option<Arc<ProjectionError>>,
    /// Set when the projection stopped (after a failure or a shutdown).
    pub stopped: bool,
    /// The positions of the projection's pending dead letters (events it passed by; see
    /// [`FailurePolicy`](super::FailurePolicy)), as this runner knows them: loaded when it
    /// takes the projection over, kept as its batches, retries and discards change them.
    pub dead_letters: Arc<std::collections::BTreeSet<Position>>,
    /// The version this runner runs (see
    /// [`ProjectionRunner::version`](super::ProjectionRunner::version)), once it has led.
    pub version: u32,
    /// Whether its version is the one readers are pointed at: false while a newer version
    /// warms up beside the serving one, true once it took over.
    pub serving: bool,
    /// Set when the runner stopped because a newer version serves: that version.
    pub superseded_by: Option<u32>,
}

/// What [`ProjectionHandle::wait_for`] found: the projection's checkpoint passed the target,
/// and which events at or before the target it passed by into dead letters (still pending).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reached {
    /// The checkpoint reached (at or after the target).
    pub checkpoint: Position,
    /// The positions at or before the target whose events are pending dead letters, in order:
    /// the read model does not reflect them.
    pub dead_lettered: Vec<Position>,
}

impl Reached {
    /// Whether the read model reflects the event at `position` (passed, and not a pending
    /// dead letter).
    pub fn reflects(&self, position: Position) -> bool {
        position <= self.checkpoint && self.dead_lettered.binary_search(&position).is_err()
    }

    /// Whether it reflects every event up to the target: no dead letter at or before it.
    pub fn is_complete(&self) -> bool {
        self.dead_lettered.is_empty()
    }
}

/// Which dead letters a retry or a discard takes (see [`ProjectionHandle::retry_dead_letters`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadLetterSelect {
    /// Every pending letter.
    All,
    /// The pending letters of this stream.
    Stream(StreamId),
    /// The letter of this event (a retry: with the letters before it in its stream).
    Event(EventId),
}

/// What a retry of dead letters did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retried {
    /// The letters the handler handled this time: resolved.
    pub handled: Vec<EventId>,
    /// The letters that failed again (each with one more attempt), at most one per stream:
    /// the stream's later letters were not tried.
    pub failed: Vec<EventId>,
}

/// A request to a spawned runner task, sent by its [`ProjectionHandle`].
#[derive(Debug)]
pub(crate) enum Control {
    /// Clear the read model and the checkpoint, then replay from zero; answer when reset.
    Rebuild(oneshot::Sender<Result<(), ProjectionError>>),
    /// Hand the selected dead letters to the handler again, in stream order.
    Retry(
        DeadLetterSelect,
        oneshot::Sender<Result<Retried, ProjectionError>>,
    ),
    /// Resolve the selected dead letters as discarded; answer how many.
    Discard(
        DeadLetterSelect,
        oneshot::Sender<Result<usize, ProjectionError>>,
    ),
    /// Stop after the batch in progress.
    Shutdown,
}

/// Controls a projection started with [`ProjectionRunner::spawn`](super::ProjectionRunner::spawn).
pub struct ProjectionHandle {
    name: Arc<str>,
    status: watch::Receiver<ProjectionStatus>,
    control: mpsc::Sender<Control>,
    task: JoinHandle<Result<(), ProjectionError>>,
}

impl std::fmt::Debug for ProjectionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionHandle")
            .field("name", &self.name)
            .field("status", &*self.status.borrow())
            .finish()
    }
}

impl ProjectionHandle {
    /// Wraps the channels of a spawned runner task.
    pub(crate) fn from_parts(
        name: Arc<str>,
        status: watch::Receiver<ProjectionStatus>,
        control: mpsc::Sender<Control>,
        task: JoinHandle<Result<(), ProjectionError>>,
    ) -> Self {
        Self {
            name,
            status,
            control,
            task,
        }
    }

    /// The projection's current status.
    pub fn status(&self) -> ProjectionStatus {
        self.status.borrow().clone()
    }

    /// The checkpoint: every event at or before it has been handled.
    pub fn checkpoint(&self) -> Position {
        self.status.borrow().checkpoint
    }

    /// Waits until the projection has handled everything up to `position` (read your writes:
    /// pass the [`Commit::position`](crate::Commit) of your command). Returns the checkpoint
    /// reached and the events at or before `position` it passed by into dead letters
    /// ([`Reached::reflects`] tells whether yours is one). Fails if the projection stops or
    /// the timeout passes first.
    pub async fn wait_for(
        &self,
        position: Position,
        timeout: Duration,
    ) -> Result<Reached, ProjectionError> {
        let mut status = self.status.clone();
        // `wait_for` returns a read guard on the status; it must be gone before `self.status()`
        // reads again: a second read lock on the same thread deadlocks behind a runner waiting
        // to write (std's RwLock lets waiting writers go first).
        let wait = async move {
            status
                .wait_for(|s| s.checkpoint >= position || s.stopped)
                .await
                .map(drop)
        };
        let waited = tokio::time::timeout(timeout, wait).await;
        let current = self.status();
        match waited {
            Ok(Ok(())) if current.checkpoint >= position => Ok(Reached {
                checkpoint: current.checkpoint,
                dead_lettered: current.dead_letters.range(..=position).copied().collect(),
            }),
            Ok(_) => Err(ProjectionError::Stopped {
                projection: Arc::clone(&self.name),
                cause: current.failed,
            }),
            Err(_) => Err(ProjectionError::Timeout {
                projection: Arc::clone(&self.name),
                target: position,
                reached: current.checkpoint,
            }),
        }
    }

    /// Waits until this runner's version serves (a new version has warmed up and taken
    /// over: see [`ProjectionRunner::version`](super::ProjectionRunner::version)), at most
    /// `timeout`; the checkpoint it took over at or after. A version that serves already
    /// answers at once, once it has led.
    pub async fn wait_serving(&self, timeout: Duration) -> Result<Position, ProjectionError> {
        let mut status = self.status.clone();
        let wait = async move {
            status
                .wait_for(|s| (s.serving && s.leader) || s.stopped)
                .await
                .map(drop)
        };
        let waited = tokio::time::timeout(timeout, wait).await;
        let current = self.status();
        match waited {
            Ok(Ok(())) if current.serving && !current.stopped => Ok(current.checkpoint),
            Ok(_) => match current.superseded_by {
                Some(by) => Err(ProjectionError::Superseded {
                    projection: Arc::clone(&self.name),
                    by,
                }),
                None => Err(ProjectionError::Stopped {
                    projection: Arc::clone(&self.name),
                    cause: current.failed,
                }),
            },
            Err(_) => Err(ProjectionError::NotServing {
                projection: Arc::clone(&self.name),
                reached: current.checkpoint,
            }),
        }
    }

    /// Clears the read model and the checkpoint, then replays the log from zero. Returns once
    /// the reset is done; use [`ProjectionHandle::wait_for`] to wait for the replay.
    pub async fn rebuild(&self) -> Result<(), ProjectionError> {
        self.ask(Control::Rebuild).await
    }

    /// Hands the selected pending dead letters to the handler again (after a fix), in stream
    /// order: each stream's letters one after the other from its oldest, up to its first that
    /// fails again (it gets one more attempt; the stream's later letters wait). A handled
    /// letter is resolved as retried; a parked stream whose letters are all resolved goes on
    /// with its new events. The runner that holds the projection does it, between batches,
    /// so a letter is never handled by two runners: a runner that does not lead now answers
    /// [`ProjectionError::NotLeading`]. A handler's panic stops the runner, as in a batch.
    ///
    /// Each letter is resolved in its own commit, so a retry that ends in an error (the
    /// lease lost midway, say) may have resolved its first letters; asking again retries
    /// what is still pending, and [`Retried`] names only what that call handled.
    pub async fn retry_dead_letters(
        &self,
        select: DeadLetterSelect,
    ) -> Result<Retried, ProjectionError> {
        self.ask(|ack| Control::Retry(select, ack)).await
    }

    /// Resolves the selected pending dead letters as discarded (kept, with the time): the
    /// read model will never reflect them. A parked stream with no pending letter left goes
    /// on with its new events. Returns how many were discarded; like a retry, only the runner
    /// that leads does it.
    pub async fn discard_dead_letters(
        &self,
        select: DeadLetterSelect,
    ) -> Result<usize, ProjectionError> {
        self.ask(|ack| Control::Discard(select, ack)).await
    }

    /// Sends a request to the runner task and waits for its answer.
    async fn ask<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T, ProjectionError>>) -> Control,
    ) -> Result<T, ProjectionError> {
        let stopped = || ProjectionError::Stopped {
            projection: Arc::clone(&self.name),
            cause: self.status.borrow().failed.clone(),
        };
        let (ack, done) = oneshot::channel();
        self.control
            .send(request(ack))
            .await
            .map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }

    /// The name the projection runs under (its checkpoint's key).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops the projection after the batch in progress (its checkpoint saved) and returns how
    /// it ended.
    pub async fn shutdown(self) -> Result<(), ProjectionError> {
        // If the task already ended, its result below says how.
        let _ = self.control.send(Control::Shutdown).await;
        match self.task.await {
            Ok(result) => result,
            Err(join) => Err(ProjectionError::Stopped {
                projection: Arc::clone(&self.name),
                cause: Some(Arc::new(ProjectionError::TaskEnded {
                    projection: Arc::clone(&self.name),
                    message: join.to_string(),
                })),
            }),
        }
    }
}
