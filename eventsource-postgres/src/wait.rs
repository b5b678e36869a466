//! Waiting for new events ([`EventStore::wait_for_events`]) and telling waiters about
//! appends: the wake-ups of this process, and the start of the LISTEN and NOTIFY tasks
//! ([`crate::notify`]) that carry them between processes.
//!
//! [`EventStore::wait_for_events`]: eventsource_core::EventStore::wait_for_events

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use eventsource_core::{Position, StoreError};
use sqlx::PgPool;
use tokio::sync::{Notify, watch};
use tokio::task::AbortHandle;

use crate::notify;
use crate::read::Reader;
use crate::rows::position_params;
use crate::schema::PgSchema;

/// How long a waiter waits before it probes again, without a wake-up.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Polls {
    /// While committed events are held behind the horizon.
    pub(crate) held: Duration,
    /// While nothing is pending.
    pub(crate) idle: Duration,
}

/// The wake-ups of one store (shared by its handles).
pub(crate) struct Live {
    /// The pool the LISTEN and NOTIFY tasks take their connection settings from.
    pool: PgPool,
    channel: String,
    /// Whether other processes are told through LISTEN/NOTIFY; without it waiters poll.
    listen: bool,
    polls: Polls,
    /// Bumped whenever events may have become readable (a local append, a notification, a
    /// reconnect of the listener).
    wake: watch::Sender<u64>,
    /// Tells the background notifier that a NOTIFY is due.
    pending_notify: Arc<Notify>,
    notifier: OnceLock<AbortHandle>,
    listener: OnceLock<AbortHandle>,
}

impl Live {
    pub(crate) fn new(pool: PgPool, schema: &PgSchema, listen: bool, polls: Polls) -> Self {
        Self {
            pool,
            channel: notify::channel_name(schema),
            listen,
            polls,
            wake: watch::Sender::new(0),
            pending_notify: Arc::new(Notify::new()),
            notifier: OnceLock::new(),
            listener: OnceLock::new(),
        }
    }

    /// Returns once events after `after` may be readable: at once when some are; otherwise
    /// after a wake-up or a poll interval, whichever comes first.
    pub(crate) async fn wait_for_events(
        &self,
        reader: Reader<'_>,
        after: Position,
    ) -> Result<(), StoreError> {
        self.ensure_listener();
        // Subscribe before probing, so a wake-up between the probe and the wait is not lost.
        let mut woken = self.wake.subscribe();
        let (c, s) = position_params(after);
        let (readable, committed): (bool, bool) = reader
            .run("probing for new events", async |conn| {
                sqlx::query_as(&reader.sql().probe)
                    .bind(c)
                    .bind(s)
                    .fetch_one(conn)
                    .await
            })
            .await?;
        if readable {
            return Ok(());
        }
        // Committed but behind the horizon: no notification will come when the horizon
        // moves, so poll.
        let timeout = if committed {
            self.polls.held
        } else {
            self.polls.idle
        };
        tokio::select! {
            _ = woken.changed() => {}
            _ = tokio::time::sleep(timeout) => {}
        }
        Ok(())
    }

    /// Wakes local subscribers and asks the background notifier to tell other processes.
    /// Never on the append's commit path: the NOTIFY runs later, on another connection.
    pub(crate) fn announce(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
        if self.listen {
            self.ensure_notifier();
            self.pending_notify.notify_one();
        }
    }

    /// Starts the background notifier, once (on the first append).
    fn ensure_notifier(&self) {
        self.notifier.get_or_init(|| {
            tokio::spawn(notify::notifier(
                self.pool.clone(),
                self.channel.clone(),
                self.pending_notify.clone(),
            ))
            .abort_handle()
        });
    }

    /// Starts the LISTEN task, once (on the first wait), unless listening is off.
    fn ensure_listener(&self) {
        if !self.listen {
            return;
        }
        self.listener.get_or_init(|| {
            tokio::spawn(notify::listener(
                self.pool.clone(),
                self.channel.clone(),
                self.wake.clone(),
            ))
            .abort_handle()
        });
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        for task in [self.notifier.get(), self.listener.get()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
    }
}
