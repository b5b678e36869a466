//! Versions of a projection and the switch between them (blue/green rebuilds): which version
//! readers are pointed at, and a switch under way, kept by the store per projection name.
//!
//! A switch from the serving version `from` to a new version `to` goes in three steps, each
//! one atomic in the store and each one safe to repeat (see [`VersionStep`]):
//!
//! 1. [`VersionStep::Seal`]: `from`'s checkpoint is sealed where it stands, at `at`. From then
//!    on the store refuses every save of it ([`StoreError::CheckpointSealed`](crate::StoreError)),
//!    so `from`'s read model stays as it was at `at`, whatever process runs it.
//! 2. `to` catches up to `at` (its own runner does, under its own checkpoint).
//! 3. [`VersionStep::Promote`]: readers are pointed at `to`, which the store allows only once
//!    `to`'s checkpoint is at or past `at`. `from` stays sealed for good (it is retired).
//!
//! [`VersionStep::Abort`] undoes step 1 instead: `from` is unsealed and serves on. A reader
//! that follows [`ProjectionVersions::serving`] therefore never sees the checkpoint it reads
//! go back, nor a version that has not caught up: `from` stops at `at`, and `to` serves only
//! from `at` on.

use crate::ids::Position;

/// The highest version a projection can have.
pub const MAX_VERSION: u32 = 1 << 30;

/// The checkpoint name of version `version` of projection `name`: `name` itself for version
/// 1 (a projection that never used versions is version 1), `name@v2`, `name@v3`... for the
/// others. Version `n`'s checkpoint, lease and dead letters are all keyed by it.
pub fn version_key(name: &str, version: u32) -> String {
    if version <= 1 {
        name.to_owned()
    } else {
        format!("{name}@v{version}")
    }
}

/// Where the versions of one projection stand.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProjectionVersions {
    /// The version readers are pointed at: 1 until a switch moves it.
    pub serving: u32,
    /// A switch under way, if any: the serving version is sealed, and the new one takes over
    /// once it has caught up.
    pub switching: Option<Switching>,
}

impl Default for ProjectionVersions {
    fn default() -> Self {
        Self {
            serving: 1,
            switching: None,
        }
    }
}

impl ProjectionVersions {
    /// Where a projection that never switched stands: version 1 serves.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where `serving` serves, with `switching` under way.
    pub fn with(serving: u32, switching: Option<Switching>) -> Self {
        Self { serving, switching }
    }

    /// Whether `version`'s checkpoint is sealed: it serves and a switch away from it is
    /// under way, or it served before and was switched away from (it is retired).
    pub fn is_sealed(&self, version: u32) -> bool {
        version < self.serving || (version == self.serving && self.switching.is_some())
    }
}

/// A switch under way: the serving version's checkpoint is sealed at `at`, and version `to`
/// takes over once its own checkpoint reaches `at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Switching {
    /// The version taking over.
    pub to: u32,
    /// Where the serving version's checkpoint is sealed.
    pub at: Position,
}

impl Switching {
    /// A switch to `to`, the serving version sealed at `at`.
    pub fn new(to: u32, at: Position) -> Self {
        Self { to, at }
    }
}

/// One step of a switch between versions of a projection (see the [module](self)). Each is
/// a compare-and-set on the projection's versions: it applies only if `from` serves (and, for
/// the last two, a switch to `to` is under way), and is refused
/// ([`StoreError::SwitchRefused`](crate::StoreError)) otherwise, with nothing changed. Each
/// one repeated after it went through (a reply that was lost) answers as the first did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VersionStep {
    /// Seals `from`'s checkpoint where it stands and records a switch to `to` (which must be
    /// higher than `from`).
    Seal {
        /// The serving version.
        from: u32,
        /// The version to switch to.
        to: u32,
    },
    /// Points readers at `to`, whose checkpoint must be at or past where `from` was sealed;
    /// `from` stays sealed.
    Promote {
        /// The serving version, sealed.
        from: u32,
        /// The version taking over.
        to: u32,
    },
    /// Gives the switch to `to` up: `from` is unsealed and serves on.
    Abort {
        /// The serving version, sealed.
        from: u32,
        /// The version that was to take over.
        to: u32,
    },
}

impl VersionStep {
    /// The versions the step is about: (`from`, `to`).
    pub fn versions(&self) -> (u32, u32) {
        match *self {
            VersionStep::Seal { from, to }
            | VersionStep::Promote { from, to }
            | VersionStep::Abort { from, to } => (from, to),
        }
    }

    /// The checkpoint name the step is decided on (see [`VersionStep::apply`]): `from`'s
    /// for a seal (the position it seals), `to`'s otherwise (a promote's condition).
    pub fn decided_on(&self, name: &str) -> String {
        match *self {
            VersionStep::Seal { from, .. } => version_key(name, from),
            VersionStep::Promote { to, .. } | VersionStep::Abort { to, .. } => {
                version_key(name, to)
            }
        }
    }

    /// What the step makes of `found`, the versions as they stand, given `checkpoint`, the
    /// checkpoint of `from` (for a seal) or of `to` (for a promote): the versions after it,
    /// or why it is refused. The rules every store applies, in one place.
    pub fn apply(
        &self,
        found: &ProjectionVersions,
        checkpoint: Position,
    ) -> Result<ProjectionVersions, String> {
        let (from, to) = self.versions();
        if from == 0 || to == 0 || from > MAX_VERSION || to > MAX_VERSION {
            return Err(format!("versions run from 1 to {MAX_VERSION}"));
        }
        match *self {
            VersionStep::Seal { .. } if to <= from => {
                Err(format!("version {to} is not after version {from}"))
            }
            VersionStep::Seal { .. } => match found.switching {
                _ if found.serving != from => Err(format!(
                    "version {} serves, not version {from}",
                    found.serving
                )),
                Some(s) if s.to == to => Ok(found.clone()),
                Some(s) => Err(format!("a switch to version {} is under way already", s.to)),
                None => Ok(ProjectionVersions::with(
                    from,
                    Some(Switching::new(to, checkpoint)),
                )),
            },
            VersionStep::Promote { .. } => match found.switching {
                None if found.serving == to => Ok(found.clone()),
                Some(s) if found.serving == from && s.to == to => {
                    if checkpoint < s.at {
                        Err(format!(
                            "version {to} is at {checkpoint}, short of {} where version {from} was sealed",
                            s.at
                        ))
                    } else {
                        Ok(ProjectionVersions::with(to, None))
                    }
                }
                _ => Err(format!(
                    "no switch from version {from} to version {to} is under way"
                )),
            },
            VersionStep::Abort { .. } => match found.switching {
                None if found.serving == from => Ok(found.clone()),
                Some(s) if found.serving == from && s.to == to => {
                    Ok(ProjectionVersions::with(from, None))
                }
                _ => Err(format!(
                    "no switch from version {from} to version {to} is under way"
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(n: u64) -> Position {
        Position::new(n, 0)
    }

    #[test]
    fn a_switch_goes_seal_then_promote_and_each_step_repeats() {
        let start = ProjectionVersions::new();
        let seal = VersionStep::Seal { from: 1, to: 2 };
        let sealed = seal.apply(&start, at(7)).unwrap();
        assert_eq!(sealed.switching, Some(Switching::new(2, at(7))));
        assert!(sealed.is_sealed(1) && !sealed.is_sealed(2));
        // Repeated (a lost reply): the same, still at 7 though the checkpoint is read anew.
        assert_eq!(seal.apply(&sealed, at(9)).unwrap(), sealed);
        let promote = VersionStep::Promote { from: 1, to: 2 };
        assert!(promote.apply(&sealed, at(6)).is_err(), "short of the seal");
        let promoted = promote.apply(&sealed, at(7)).unwrap();
        assert_eq!(promoted, ProjectionVersions::with(2, None));
        assert!(promoted.is_sealed(1), "the prior version is retired");
        assert_eq!(promote.apply(&promoted, at(0)).unwrap(), promoted);
        assert!(
            VersionStep::Abort { from: 1, to: 2 }
                .apply(&promoted, at(0))
                .is_err()
        );
    }

    #[test]
    fn steps_out_of_turn_are_refused() {
        let start = ProjectionVersions::new();
        assert!(
            VersionStep::Seal { from: 2, to: 3 }
                .apply(&start, at(1))
                .is_err()
        );
        assert!(
            VersionStep::Seal { from: 1, to: 1 }
                .apply(&start, at(1))
                .is_err()
        );
        assert!(
            VersionStep::Seal { from: 0, to: 1 }
                .apply(&start, at(1))
                .is_err()
        );
        assert!(
            VersionStep::Promote { from: 1, to: 2 }
                .apply(&start, at(1))
                .is_err()
        );
        let sealed = VersionStep::Seal { from: 1, to: 2 }
            .apply(&start, at(1))
            .unwrap();
        assert!(
            VersionStep::Seal { from: 1, to: 3 }
                .apply(&sealed, at(1))
                .is_err()
        );
        let aborted = VersionStep::Abort { from: 1, to: 2 }
            .apply(&sealed, at(1))
            .unwrap();
        assert_eq!(aborted, start);
        assert!(!aborted.is_sealed(1));
    }
}
