//! Versions of a projection on PostgreSQL (migration 0008): the `projection_versions` row
//! readers follow to the serving version, and the steps of a switch, each one transaction
//! that locks the projection's row first, so two switches never interleave.
//!
//! A seal also locks the serving version's checkpoint row (`FOR UPDATE`): a batch of that
//! version committing at that moment is waited for, and the seal is taken at the checkpoint
//! it left. From the seal's commit on, migration 0008's trigger refuses every save of that
//! checkpoint, whichever runner or binary tries.

use eventsource_core::store::{ProjectionVersions, Switching, VersionStep, input, version_key};
use eventsource_core::{Position, StoreError};
use sqlx::PgConnection;

use crate::meta::checkpoint_from;
use crate::read::Reader;
use crate::rows::{position_from, position_params};

/// A `projection_versions` row: serving, switching_to, switch_commit_id, switch_seq.
type VersionsRow = (i32, Option<i32>, Option<i64>, Option<i64>);

/// The versions of projection `name` as they stand (version 1 serving, when it has no row).
pub(crate) async fn load(reader: Reader<'_>, name: &str) -> Result<ProjectionVersions, StoreError> {
    input::check_checkpoint(name)?;
    let s = reader.sql();
    let row: Option<VersionsRow> = reader
        .run("loading a projection's versions", async |c| {
            sqlx::query_as(&s.load_versions)
                .bind(name)
                .fetch_optional(c)
                .await
        })
        .await?;
    match row {
        None => Ok(ProjectionVersions::new()),
        Some(row) => versions_from(name, row),
    }
}

fn versions_from(
    name: &str,
    (serving, to, commit, seq): VersionsRow,
) -> Result<ProjectionVersions, StoreError> {
    let corrupt = |what: &str| StoreError::CorruptCheckpoint {
        name: name.to_owned(),
        reason: format!("its versions row holds {what}"),
    };
    let serving = u32::try_from(serving).map_err(|_| corrupt("a negative version"))?;
    let switching = match (to, commit, seq) {
        (None, None, None) => None,
        (Some(to), Some(c), Some(s)) => Some(Switching::new(
            u32::try_from(to).map_err(|_| corrupt("a negative version"))?,
            position_from(c, s).ok_or_else(|| corrupt("an impossible position"))?,
        )),
        _ => return Err(corrupt("a switch with parts missing")),
    };
    Ok(ProjectionVersions::with(serving, switching))
}

/// Takes `step` of a switch of projection `name`, in one transaction (see the module).
pub(crate) async fn switch(
    reader: Reader<'_>,
    name: &str,
    step: VersionStep,
) -> Result<ProjectionVersions, StoreError> {
    input::check_version_step(name, &step)?;
    let s = reader.sql();
    reader
        .run("switching a projection's version", async |c| {
            switch_in(c, s, name, step).await
        })
        .await?
}

async fn switch_in(
    c: &mut PgConnection,
    s: &crate::sql::Sql,
    name: &str,
    step: VersionStep,
) -> Result<Result<ProjectionVersions, StoreError>, sqlx::Error> {
    let from_key = version_key(name, step.versions().0);
    let mut tx = sqlx::Connection::begin(c).await?;
    sqlx::query(&s.insert_versions)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    let row: VersionsRow = sqlx::query_as(&s.lock_versions)
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
    let found = match versions_from(name, row) {
        Ok(found) => found,
        Err(e) => return Ok(Err(e)),
    };
    // The checkpoint the step is decided on: the serving version's for a seal (locked, and
    // created at zero if it never saved one, so that the seal holds it), the new version's
    // for a promote.
    let key = step.decided_on(name);
    if matches!(step, VersionStep::Seal { .. }) {
        sqlx::query(&s.insert_checkpoint_at_zero)
            .bind(&key)
            .execute(&mut *tx)
            .await?;
    }
    let saved: Option<(i64, i64)> = sqlx::query_as(&s.lock_checkpoint)
        .bind(&key)
        .fetch_optional(&mut *tx)
        .await?;
    let checkpoint = match saved {
        None => Position::ZERO,
        Some((commit, seq)) => match checkpoint_from(&key, commit, seq) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        },
    };
    let next = match step.apply(&found, checkpoint) {
        Ok(next) => next,
        Err(reason) => {
            return Ok(Err(StoreError::SwitchRefused {
                projection: name.to_owned(),
                reason,
            }));
        }
    };
    if next != found {
        let (to, commit, seq) = match next.switching {
            Some(sw) => {
                let (c, s) = position_params(sw.at);
                (i32::try_from(sw.to).ok(), Some(c), Some(s))
            }
            None => (None, None, None),
        };
        sqlx::query(&s.update_versions)
            .bind(name)
            .bind(i32::try_from(next.serving).unwrap_or(i32::MAX))
            .bind(to)
            .bind(commit)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        let seal = match step {
            VersionStep::Seal { .. } => Some(true),
            VersionStep::Abort { .. } => Some(false),
            _ => None,
        };
        if let Some(sealed) = seal {
            sqlx::query(&s.seal_checkpoint)
                .bind(&from_key)
                .bind(sealed)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(Ok(next))
}
