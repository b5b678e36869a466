//! The `wallet_balances` read model as a table in the store's own schema, fed by
//! `PgProjectionRunner`: each batch's changes commit in the transaction that saves the
//! checkpoint, so every event is applied exactly once and the handlers need not deduplicate.

use std::collections::BTreeMap;

use eventsource_core::prelude::*;
use eventsource_postgres::{PgProjectionContext, PgStore};

use crate::Balance;
use crate::wallet::{Paid, ToppedUp, WalletOpened};

/// The transactional projection. It holds nothing: the read model is the table
/// `<schema>.wallet_balances`, created by [`PgBalances::create_table`].
#[derive(Debug, Default, Projection)]
#[projection(
    name = "wallet_balances_table",
    events(WalletOpened, ToppedUp, Paid),
    context = PgProjectionContext,
    reset = Self::clear
)]
pub struct PgBalances;

/// The read model's table in `store`'s schema, quoted. (The schema name is validated by the
/// store: a plain identifier.)
fn table(store: &PgStore) -> String {
    format!("\"{}\".wallet_balances", store.schema().as_str())
}

impl PgBalances {
    /// Creates the read model's table in `store`'s schema.
    pub async fn create_table(store: &PgStore) -> Result<(), sqlx::Error> {
        let ddl = format!(
            "CREATE TABLE {} (wallet text PRIMARY KEY, owner text NOT NULL, \
             cents bigint NOT NULL, version bigint NOT NULL)",
            table(store)
        );
        sqlx::query(&ddl).execute(store.pool()).await.map(drop)
    }

    /// Every wallet in the table, by wallet id.
    pub async fn read(store: &PgStore) -> Result<BTreeMap<String, Balance>, sqlx::Error> {
        let query = format!("SELECT wallet, owner, cents, version FROM {}", table(store));
        let rows: Vec<(String, String, i64, i64)> =
            sqlx::query_as(&query).fetch_all(store.pool()).await?;
        Ok(rows
            .into_iter()
            .map(|(wallet, owner, cents, version)| {
                let version = u64::try_from(version).unwrap_or_default();
                (
                    wallet,
                    Balance {
                        owner,
                        cents,
                        version,
                    },
                )
            })
            .collect())
    }

    /// Empties the table, in the transaction that resets the checkpoint.
    async fn clear(&mut self, ctx: &mut PgProjectionContext) -> Result<(), HandlerError> {
        let statement = format!("TRUNCATE {}", table(ctx.store()));
        sqlx::query(&statement).execute(ctx.conn()).await?;
        Ok(())
    }
}

/// Adds `delta` to the balance of `at`'s wallet, in the batch's transaction.
async fn add(
    ctx: &mut PgProjectionContext,
    at: &RecordedEvent,
    delta: i64,
) -> Result<(), HandlerError> {
    let statement = format!(
        "UPDATE {} SET cents = cents + $2, version = $3 WHERE wallet = $1",
        table(ctx.store())
    );
    let updated = sqlx::query(&statement)
        .bind(crate::wallet_id(&at.stream))
        .bind(delta)
        .bind(i64::try_from(at.version.get())?)
        .execute(ctx.conn())
        .await?;
    if updated.rows_affected() != 1 {
        return Err(format!("no wallet row for stream `{}`", at.stream).into());
    }
    Ok(())
}

impl Handle<WalletOpened> for PgBalances {
    async fn handle(
        &mut self,
        e: WalletOpened,
        at: &RecordedEvent,
        ctx: &mut PgProjectionContext,
    ) -> Result<(), HandlerError> {
        let statement = format!(
            "INSERT INTO {} (wallet, owner, cents, version) VALUES ($1, $2, 0, $3)",
            table(ctx.store())
        );
        sqlx::query(&statement)
            .bind(crate::wallet_id(&at.stream))
            .bind(e.owner)
            .bind(i64::try_from(at.version.get())?)
            .execute(ctx.conn())
            .await?;
        Ok(())
    }
}

impl Handle<ToppedUp> for PgBalances {
    async fn handle(
        &mut self,
        e: ToppedUp,
        at: &RecordedEvent,
        ctx: &mut PgProjectionContext,
    ) -> Result<(), HandlerError> {
        add(ctx, at, e.cents).await
    }
}

impl Handle<Paid> for PgBalances {
    async fn handle(
        &mut self,
        e: Paid,
        at: &RecordedEvent,
        ctx: &mut PgProjectionContext,
    ) -> Result<(), HandlerError> {
        let delta = e
            .cents
            .checked_neg()
            .ok_or("a payment too large to subtract")?;
        add(ctx, at, delta).await
    }
}
