//! Postgres: the only place with SQL. One module per aggregate.

pub mod api_keys;
pub mod batch;
pub mod callbacks;
pub mod change_cache;
pub mod documents;
pub mod events;
pub mod jobs;
pub mod listen;
pub mod pools;
pub mod printers;
pub mod retention;
pub mod secrets;
pub mod slots;
pub mod storable;
pub mod text_enum;
pub mod webhooks;
pub mod wecom;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use crate::domain::backoff::Backoff;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
    /// The document object store (DOCUMENT_STORE_URL) failed.
    #[error("document store: {0}")]
    Objects(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Whether an error means "the database cannot be reached right now" (an outage, a
/// restart, a full pool) rather than a fault in the request or the data: no connection in
/// time, a broken or refused connection (also mid-handshake), or the server shutting down
/// or starting up.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        // A connection cut during its handshake reads as garbage from the server.
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 57P01-57P03: admin shutdown, crash shutdown,
            // cannot connect now (starting up or in recovery).
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

/// A pooled connection idle this long is pinged before it is handed out (see [`connect`]).
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

/// Opens a pool on `url`, creating the database first when it does not exist. A request
/// waits at most `acquire_timeout` for a connection (during an outage the API answers 503
/// instead of hanging).
pub async fn connect(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> StoreResult<PgPool> {
    let options = PgConnectOptions::from_str(url)?.log_statements(tracing::log::LevelFilter::Trace);
    create_database_if_missing(&options).await?;
    // One direct connection first: its error says what is wrong (refused, auth, …)
    // where the pool would only report a timeout.
    options.connect().await?.close().await?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        // sqlx's default pings every connection it hands out: a round trip before each
        // statement (a millisecond under load, a fifth of an accept's wait). A connection in
        // use moments ago is alive, and if not, its statement fails like any other during an
        // outage (503, or the engine tries again) and sqlx drops it on release; one left idle
        // a while (across a Postgres restart, say) is still checked before use.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_WHEN_IDLE_FOR {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// Whether a connection error may go away by itself (Postgres not up yet, starting, the
/// database not yet created by another replica), as opposed to a wrong URL or password.
pub fn is_transient(err: &StoreError) -> bool {
    match err {
        StoreError::Db(err) if is_unavailable(err) => true,
        // 3D000 no such database (yet: another replica creates it), 53300 too many connections
        StoreError::Db(sqlx::Error::Database(db)) => {
            matches!(db.code().as_deref(), Some("3D000" | "53300"))
        }
        _ => false,
    }
}

/// What [`connect_waiting`] reports before each new try.
#[derive(Debug)]
pub struct RetryNotice<'a> {
    pub attempt: u32,
    pub error: &'a StoreError,
    pub next_try_in: Duration,
}

/// [`connect`], retried with exponential backoff (0.25 s doubling to 8 s) while the error
/// is transient and `max_wait` has not passed. `on_retry` hears of each failed try.
pub async fn connect_waiting(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
    max_wait: Duration,
    mut on_retry: impl FnMut(RetryNotice<'_>),
) -> StoreResult<PgPool> {
    let started = std::time::Instant::now();
    let backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(8));
    let mut attempt = 1;
    loop {
        match connect(url, max_connections, acquire_timeout).await {
            Ok(pool) => return Ok(pool),
            Err(error) => {
                let left = max_wait.saturating_sub(started.elapsed());
                if !is_transient(&error) || left.is_zero() {
                    return Err(error);
                }
                let next_try_in = backoff.delay(attempt).min(left);
                on_retry(RetryNotice {
                    attempt,
                    error: &error,
                    next_try_in,
                });
                tokio::time::sleep(next_try_in).await;
                attempt += 1;
            }
        }
    }
}

async fn create_database_if_missing(options: &PgConnectOptions) -> StoreResult<()> {
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let admin = options.clone().database("postgres");
    let mut conn = match admin.connect().await {
        Ok(conn) => conn,
        // No access to the maintenance database: assume the target exists and let the
        // real connection report a clear error if it does not.
        Err(_) => return Ok(()),
    };
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        if let Err(err) = sqlx::query(&format!("CREATE DATABASE {quoted}"))
            .execute(&mut conn)
            .await
        {
            // Another replica may have created it in the meantime.
            let raced = err
                .as_database_error()
                .and_then(|e| e.code())
                .is_some_and(|code| code == "42P04");
            if !raced {
                return Err(err.into());
            }
        }
        tracing::info!(database = %name, "created database");
    }
    conn.close().await?;
    Ok(())
}

pub async fn migrate(pool: &PgPool) -> StoreResult<()> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Why the database is not ready for this binary.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("database not reachable or not migrated: {0}")]
    Unreachable(sqlx::Error),
    #[error("migrations not applied: {0:?}")]
    Unapplied(Vec<i64>),
}

/// Ready = the database answers and every migration this binary knows is applied.
pub async fn readiness(pool: &PgPool) -> Result<(), NotReady> {
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
            .map_err(NotReady::Unreachable)?;
    let missing: Vec<i64> = MIGRATOR
        .iter()
        .map(|m| m.version)
        .filter(|v| !applied.contains(v))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(NotReady::Unapplied(missing))
    }
}
