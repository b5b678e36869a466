//! [`ProjectionHandle`]: how a caller sees and steers a spawned runner ([`ProjectionStatus`],
//! `wait_for`, `rebuild`, `shutdown`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::ProjectionError;
use crate::ids::Position;

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
}

/// A request to a spawned runner task, sent by its [`ProjectionHandle`].
#[derive(Debug)]
pub(crate) enum Control {
    /// Clear the read model and the checkpoint, then replay from zero; answer when reset.
    Rebuild(oneshot::Sender<Result<(), ProjectionError>>),
    /// Stop after the batch in progress.
    Shutdown,
}

/// Controls a projection started with [`ProjectionRunner::spawn`](super::ProjectionRunner::spawn).
pub struct ProjectionHandle {
    name: &'static str,
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
        name: &'static str,
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
    /// reached. Fails if the projection stops or the timeout passes first.
    pub async fn wait_for(
        &self,
        position: Position,
        timeout: Duration,
    ) -> Result<Position, ProjectionError> {
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
            Ok(Ok(())) if current.checkpoint >= position => Ok(current.checkpoint),
            Ok(_) => Err(ProjectionError::Stopped {
                projection: self.name,
                cause: current.failed,
            }),
            Err(_) => Err(ProjectionError::Timeout {
                projection: self.name,
                target: position,
                reached: current.checkpoint,
            }),
        }
    }

    /// Clears the read model and the checkpoint, then replays the log from zero. Returns once
    /// the reset is done; use [`ProjectionHandle::wait_for`] to wait for the replay.
    pub async fn rebuild(&self) -> Result<(), ProjectionError> {
        let stopped = || ProjectionError::Stopped {
            projection: self.name,
            cause: self.status.borrow().failed.clone(),
        };
        let (ack, done) = oneshot::channel();
        self.control
            .send(Control::Rebuild(ack))
            .await
            .map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }

    /// Stops the projection after the batch in progress (its checkpoint saved) and returns how
    /// it ended.
    pub async fn shutdown(self) -> Result<(), ProjectionError> {
        // If the task already ended, its result below says how.
        let _ = self.control.send(Control::Shutdown).await;
        match self.task.await {
            Ok(result) => result,
            Err(join) => Err(ProjectionError::Stopped {
                projection: self.name,
                cause: Some(Arc::new(ProjectionError::TaskEnded {
                    projection: self.name,
                    message: join.to_string(),
                })),
            }),
        }
    }
}
