//! What the in-memory store keeps for projections beside the log: checkpoints with the
//! versions of each projection (a seal and the saves it refuses under one lock), and dead
//! letters.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::error::StoreError;
use crate::ids::{EventId, Position};
use crate::store::{
    DeadLetter, DeadLetterChange, DeadLetterQuery, ProjectionVersions, Resolution, VersionStep,
    version_key,
};

/// The projections' checkpoints and versions, under one lock: a seal and the saves it
/// refuses never interleave.
#[derive(Default)]
pub(super) struct Checkpoints {
    pub(super) positions: HashMap<String, Position>,
    /// Per projection name, where its versions stand (absent: version 1 serves).
    versions: HashMap<String, ProjectionVersions>,
    /// The checkpoint names of sealed versions.
    sealed: HashSet<String>,
}

impl Checkpoints {
    /// Saves checkpoint `name` at `position`, unless it is sealed.
    pub(super) fn save(&mut self, name: &str, position: Position) -> Result<(), StoreError> {
        if self.sealed.contains(name) {
            return Err(StoreError::CheckpointSealed {
                name: name.to_owned(),
            });
        }
        self.positions.insert(name.to_owned(), position);
        Ok(())
    }

    /// Where projection `name`'s versions stand.
    pub(super) fn versions(&self, name: &str) -> ProjectionVersions {
        self.versions.get(name).cloned().unwrap_or_default()
    }

    /// Takes `step` of a switch of projection `name` (see [`VersionStep::apply`]).
    pub(super) fn switch(
        &mut self,
        name: &str,
        step: VersionStep,
    ) -> Result<ProjectionVersions, StoreError> {
        let found = self.versions(name);
        let key = step.decided_on(name);
        let checkpoint = self.positions.get(&key).copied().unwrap_or(Position::ZERO);
        let next = step
            .apply(&found, checkpoint)
            .map_err(|reason| StoreError::SwitchRefused {
                projection: name.to_owned(),
                reason,
            })?;
        let from_key = version_key(name, step.versions().0);
        match step {
            VersionStep::Seal { .. } => {
                self.positions.entry(from_key.clone()).or_insert(checkpoint);
                self.sealed.insert(from_key);
            }
            VersionStep::Abort { .. } => {
                self.sealed.remove(&from_key);
            }
            VersionStep::Promote { .. } => {}
        }
        self.versions.insert(name.to_owned(), next.clone());
        Ok(next)
    }
}

/// One projection's dead letters.
#[derive(Default)]
pub(super) struct Letters {
    by_position: BTreeMap<Position, DeadLetter>,
    positions: HashMap<EventId, Position>,
}

impl Letters {
    /// Applies `changes` of projection `projection`, in order, at `now`.
    pub(super) fn write(
        &mut self,
        projection: &str,
        changes: &[DeadLetterChange],
        now: DateTime<Utc>,
    ) {
        for change in changes {
            match change {
                DeadLetterChange::Failed {
                    event,
                    reason,
                    error,
                } => match self.by_position.get_mut(&event.position) {
                    Some(letter) => {
                        letter.attempts = letter.attempts.saturating_add(1);
                        letter.reason = *reason;
                        letter.error.clone_from(error);
                        letter.last_failed_at = now;
                        letter.resolution = None;
                    }
                    None => {
                        self.positions.insert(event.id, event.position);
                        self.by_position.insert(
                            event.position,
                            DeadLetter {
                                projection: projection.to_owned(),
                                event: event.clone(),
                                reason: *reason,
                                error: error.clone(),
                                attempts: 1,
                                first_failed_at: now,
                                last_failed_at: now,
                                resolution: None,
                            },
                        );
                    }
                },
                DeadLetterChange::Resolved { event_id, kind } => {
                    let letter = self
                        .positions
                        .get(event_id)
                        .and_then(|p| self.by_position.get_mut(p));
                    if let Some(letter) = letter.filter(|l| l.resolution.is_none()) {
                        letter.resolution = Some(Resolution {
                            kind: *kind,
                            at: now,
                        });
                    }
                }
            }
        }
    }

    /// The letters `query` selects, in position order.
    pub(super) fn page(&self, query: &DeadLetterQuery) -> Vec<DeadLetter> {
        self.by_position
            .range((
                std::ops::Bound::Excluded(query.after),
                std::ops::Bound::Unbounded,
            ))
            .map(|(_, l)| l)
            .filter(|l| !query.pending_only || l.is_pending())
            .filter(|l| query.stream.as_ref().is_none_or(|s| *s == l.event.stream))
            .take(query.limit.max(1))
            .cloned()
            .collect()
    }
}
