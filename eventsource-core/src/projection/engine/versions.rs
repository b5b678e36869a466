//! Versions of a projection (blue/green rebuilds): what a runner does when its version is
//! not the one that serves. A newer version *warms up* beside the serving one: it reads the
//! log only up to the serving version's checkpoint (so every event it handles before the
//! switch is one the serving version handled: a replay), chases that checkpoint while it
//! moves, then switches over in the store's three steps ([`crate::store::versions`]): it
//! seals the serving version where it stands, catches up to that position, and promotes
//! itself. A version that is sealed stands by until the switch ends; one that was switched
//! away from stops.

use std::cell::Cell;

use super::{Engine, Halt};
use crate::envelope::RecordedEvent;
use crate::error::StoreError;
use crate::ids::Position;
use crate::projection::Projection;
use crate::projection::backend::{BackendError, RunnerBackend};
use crate::store::{EventStore, LogPage, ProjectionVersions, VersionStep, version_key};

tokio::task_local! {
    /// Whether the event the handler of this task is given is a replay.
    static REPLAYING: Cell<bool>;
}

/// Whether the event the calling handler is handling is a *replay*: one that an earlier run
/// of its projection already handled, so that its side effects (an email, a message to
/// another system) were made then and must not be made again.
///
/// True for the events a new version of a projection handles while it warms up beside the
/// serving version (every one at or before the serving version's checkpoint: see
/// [`ProjectionRunner::version`](crate::ProjectionRunner::version)), and for the events a
/// rebuild ([`ProjectionHandle::rebuild`](crate::ProjectionHandle::rebuild)) replays up to
/// where the projection stood when it was asked (the rebuild's own process only: a rebuild
/// resumed by another process does not know that position). False otherwise, and outside a
/// handler. Asked on the handler's own task (not on one it spawns).
///
/// "Handled before" is the serving version's checkpoint passing the event: a new version
/// that lists event types (or has a filter) the serving one did not have is told its
/// replays of those are replays too, though no version made their side effects. Give such
/// effects a version of their own, or make them idempotent.
///
/// ```
/// # use eventsource_core::*;
/// # async fn send_welcome(_: &RecordedEvent) {}
/// # async fn doc(envelope: &RecordedEvent) {
/// if !eventsource_core::projection::is_replay() {
///     send_welcome(envelope).await; // once per event, whatever rebuilds it
/// }
/// # }
/// ```
pub fn is_replay() -> bool {
    REPLAYING.try_with(Cell::get).unwrap_or(false)
}

/// Runs `batch` with [`is_replay`] answerable inside it (false until [`set_replay`]).
pub(super) async fn replay_scope<F: std::future::Future>(batch: F) -> F::Output {
    REPLAYING.scope(Cell::new(false), batch).await
}

/// Says whether the event about to be handled is a replay (inside [`replay_scope`]).
pub(super) fn set_replay(replay: bool) {
    let _ = REPLAYING.try_with(|r| r.set(replay));
}

/// How many times a warming version reads the serving version's checkpoint again before it
/// seals it wherever it stands.
const MAX_CHASES: u32 = 4;

/// What this version is to the projection, as the store said when the runner last led.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// It serves (a projection that never switched is version 1, serving).
    Serving,
    /// It is newer than the serving version `prior` and builds beside it: it handles the
    /// log only up to `cap`, the prior version's checkpoint (`sealed`: where the store
    /// sealed it, for the switch under way to this version). `batches`: how many batches it
    /// handled since `cap` was read; `chases`: how many times it read `cap` again.
    Warming {
        prior: u32,
        cap: Position,
        sealed: bool,
        batches: usize,
        chases: u32,
    },
}

/// What the store's versions make of a runner about to lead.
enum Standing {
    Serving,
    /// A switch away from this version is under way: it stands by.
    Sealed,
    /// A newer version serves.
    Superseded(u32),
    Warming {
        prior: u32,
        /// Where the prior version is sealed, when a switch to this one (or another) is
        /// under way.
        sealed_at: Option<(Position, bool)>,
    },
}

fn standing(version: u32, versions: &ProjectionVersions) -> Standing {
    use std::cmp::Ordering;
    match version.cmp(&versions.serving) {
        Ordering::Less => Standing::Superseded(versions.serving),
        Ordering::Equal if versions.switching.is_some() => Standing::Sealed,
        Ordering::Equal => Standing::Serving,
        Ordering::Greater => Standing::Warming {
            prior: versions.serving,
            sealed_at: versions.switching.map(|s| (s.at, s.to == version)),
        },
    }
}

impl<P, S, B> Engine<P, S, B>
where
    P: Projection,
    S: EventStore,
    B: RunnerBackend<Context = P::Context>,
{
    pub(super) fn store_halt(&self, e: StoreError) -> Halt {
        self.halt(BackendError::Store(e))
    }

    /// Finds this version's role from the store, having just led: `Ok(true)` to go on,
    /// `Ok(false)` to stand by (it is sealed), [`Halt::Superseded`] when a newer version
    /// serves.
    pub(super) async fn take_role(&mut self) -> Result<bool, Halt> {
        match self.standing().await? {
            Standing::Serving => {
                self.role = Role::Serving;
                Ok(true)
            }
            Standing::Sealed => Ok(false),
            Standing::Superseded(by) => Err(Halt::Superseded(by)),
            Standing::Warming { prior, sealed_at } => {
                let (cap, sealed) = match sealed_at {
                    Some((at, mine)) => (at, mine),
                    None => (self.prior_checkpoint(prior).await?, false),
                };
                self.role = Role::Warming {
                    prior,
                    cap,
                    sealed,
                    batches: 0,
                    chases: 0,
                };
                self.replay_until = Some(self.replay_until.map_or(cap, |r| r.max(cap)));
                Ok(true)
            }
        }
    }

    /// Whether the store's versions still make this runner's role what it is (a serving
    /// version still serves, unsealed).
    pub(super) async fn still_serving(&mut self) -> Result<bool, Halt> {
        if self.role != Role::Serving {
            return Ok(true);
        }
        Ok(matches!(self.standing().await?, Standing::Serving))
    }

    /// What the store's versions make of this version now.
    async fn standing(&mut self) -> Result<Standing, Halt> {
        let versions = self
            .store
            .projection_versions(&self.base)
            .await
            .map_err(|e| self.store_halt(e))?;
        Ok(standing(self.version, &versions))
    }

    async fn prior_checkpoint(&mut self, prior: u32) -> Result<Position, Halt> {
        let key = version_key(&self.base, prior);
        let saved = self
            .store
            .load_checkpoint(&key)
            .await
            .map_err(|e| self.store_halt(e))?;
        Ok(saved.unwrap_or(Position::ZERO))
    }

    /// The page as this version may handle it: while it warms up, nothing after its cap.
    pub(super) fn capped(&mut self, mut page: LogPage) -> LogPage {
        if let Role::Warming { cap, batches, .. } = &mut self.role {
            let keep = page.events.partition_point(|e| e.position <= *cap);
            page.events.truncate(keep);
            page.scanned_to = page.scanned_to.min(*cap);
            if !page.events.is_empty() || page.scanned_to > self.checkpoint {
                *batches += 1;
            }
        }
        page
    }

    /// Whether `event` is a replay (see [`is_replay`]).
    pub(super) fn is_replayed(&self, event: &RecordedEvent) -> bool {
        self.replay_until.is_some_and(|r| event.position <= r)
    }

    /// A warming version has handled everything up to its cap: it reads the prior
    /// version's checkpoint again (which moved meanwhile), or, once a chase took at most one
    /// batch, seals the prior version; once caught up to the seal, it promotes itself.
    /// Whether it serves now.
    pub(super) async fn at_cap(&mut self) -> Result<bool, Halt> {
        let Role::Warming {
            prior,
            cap,
            sealed,
            batches,
            chases,
        } = self.role
        else {
            return Ok(true);
        };
        let from = prior;
        let to = self.version;
        if sealed {
            let step = VersionStep::Promote { from, to };
            self.switch(step).await?;
            tracing::info!(from, to, at = %cap, "switched: this version serves now");
            self.role = Role::Serving;
            return Ok(true);
        }
        // Under a load that keeps the serving version as busy as this one, a chase may
        // never take a single batch: after a few, the seal is taken wherever it stands, and
        // the last catch-up is longer.
        if batches > 1 && chases < MAX_CHASES {
            let cap = self.prior_checkpoint(prior).await?;
            self.role = Role::Warming {
                prior,
                cap,
                sealed: false,
                batches: 0,
                chases: chases + 1,
            };
            self.replay_until = Some(self.replay_until.map_or(cap, |r| r.max(cap)));
            return Ok(false);
        }
        let versions = self.switch(VersionStep::Seal { from, to }).await?;
        let at = versions.switching.map_or(cap, |s| s.at);
        tracing::info!(from, to, %at, "sealed the serving version: catching up to it");
        self.role = Role::Warming {
            prior,
            cap: at,
            sealed: true,
            batches: 0,
            chases: 0,
        };
        self.replay_until = Some(self.replay_until.map_or(at, |r| r.max(at)));
        Ok(false)
    }

    /// One step of the switch; refused, the runner leads again after a pause (the versions
    /// changed under it).
    async fn switch(&mut self, step: VersionStep) -> Result<ProjectionVersions, Halt> {
        match self.store.switch_version(&self.base, step).await {
            Ok(versions) => Ok(versions),
            Err(StoreError::SwitchRefused { reason, .. }) => {
                tracing::info!(%reason, ?step, "switch step refused: reading the versions again");
                tokio::time::sleep(self.backend.standby_poll()).await;
                Err(Halt::Relead)
            }
            Err(e) => Err(self.store_halt(e)),
        }
    }

    /// Forgets the switch this runner was taking part in: it no longer leads (another
    /// process running this version may carry the switch on), so it must not give it up
    /// when it stops. Leading again reads the switch anew.
    pub(super) fn forget_switch(&mut self) {
        if let Role::Warming { sealed, .. } = &mut self.role {
            *sealed = false;
        }
    }

    /// Gives up the switch to this version, if it sealed the serving one (the runner stops
    /// before it could promote itself): the serving version is unsealed and serves on. The
    /// store keeps the seal if this fails (the switch resumes when this version runs again,
    /// or an operator aborts it).
    pub(super) async fn abandon_switch(&mut self) {
        if let Role::Warming {
            prior,
            sealed: true,
            ..
        } = self.role
        {
            let step = VersionStep::Abort {
                from: prior,
                to: self.version,
            };
            match self.store.switch_version(&self.base, step).await {
                Ok(_) => tracing::warn!(
                    from = prior,
                    to = self.version,
                    "stopped during a switch: gave it up, the serving version serves on"
                ),
                Err(error) => tracing::error!(
                    %error,
                    "stopped during a switch and could not give it up: the serving version stays sealed until this version runs again or the switch is aborted"
                ),
            }
            if let Role::Warming {
                sealed, batches, ..
            } = &mut self.role
            {
                *sealed = false;
                *batches = 0;
            }
        }
    }
}
