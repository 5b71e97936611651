//! Storage: one diesel codebase over Postgres and embedded SQLite. The backend is chosen
//! explicitly by the URL scheme, never by trying one and then the other.
pub mod calls;
pub mod push_subscriptions;
pub mod relations;
pub mod schema;
pub mod sessions;
pub mod settings;
pub mod users;

use crate::config::DatabaseUrl;
use crate::error::{AppError, StartupError};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ManageConnection, Pool, PooledConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::time::Duration;

#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Pg(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// How long a caller waits for the database before it gets `unavailable`.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// libpq settings added to a Postgres URL that does not set them: give up connecting after 3 s
/// (libpq's default is to wait forever), and notice a peer that vanished (keepalives, and data
/// unacknowledged for 10 s) instead of waiting on its socket for good.
const PG_PARAMS: [(&str, &str); 6] = [
    ("connect_timeout", "3"),
    ("keepalives", "1"),
    ("keepalives_idle", "10"),
    ("keepalives_interval", "3"),
    ("keepalives_count", "3"),
    ("tcp_user_timeout", "10000"),
];

/// `url` with each of [`PG_PARAMS`] it does not set itself.
fn with_pg_params(url: &str) -> String {
    let mut out = url.to_owned();
    for (name, value) in PG_PARAMS {
        let set = url
            .split_once('?')
            .is_some_and(|(_, query)| query.split('&').any(|p| p.split('=').next() == Some(name)));
        if !set {
            out.push(if out.contains('?') { '&' } else { '?' });
            out.push_str(&format!("{name}={value}"));
        }
    }
    out
}

/// Opens connections for the r2d2 pool, picking the backend from the URL scheme.
pub struct DbManager {
    url: DatabaseUrl,
}

impl ManageConnection for DbManager {
    type Connection = DbConn;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConn, Self::Error> {
        use diesel::r2d2::Error as E;
        match &self.url {
            DatabaseUrl::Postgres(url) => diesel::PgConnection::establish(&with_pg_params(url))
                .map(DbConn::Pg)
                .map_err(E::ConnectionError),
            DatabaseUrl::Sqlite(path) => {
                let mut conn =
                    diesel::SqliteConnection::establish(path).map_err(E::ConnectionError)?;
                // WAL lets readers run beside the writer; busy_timeout makes a second writer wait
                // instead of failing; foreign keys are off by default in SQLite.
                conn.batch_execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
                )
                .map_err(E::QueryError)?;
                Ok(DbConn::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), Self::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, _conn: &mut DbConn) -> bool {
        std::thread::panicking()
    }
}

pub type DbPool = Pool<DbManager>;

/// The handle every part of the broker uses to reach the database. All work runs on the
/// blocking pool, never on an actor's or an async worker's thread.
#[derive(Clone)]
pub struct Db {
    pool: DbPool,
}

impl Db {
    /// Builds the pool and runs pending migrations. SQLite gets a single connection: it has one
    /// writer anyway, and a single connection rules out the "read then upgrade to write" busy
    /// errors that concurrent transactions would otherwise hit.
    pub fn connect(url: &DatabaseUrl, pool_size: u32) -> Result<Self, StartupError> {
        let size = match url {
            DatabaseUrl::Postgres(_) => pool_size.max(1),
            DatabaseUrl::Sqlite(_) => 1,
        };
        let pool = Pool::builder()
            .max_size(size)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(3))
            .build(DbManager { url: url.clone() })
            .map_err(StartupError::DatabaseConnect)?;
        let mut conn = pool.get().map_err(StartupError::DatabaseConnect)?;
        let migrated = match &mut *conn {
            DbConn::Pg(c) => c.run_pending_migrations(PG_MIGRATIONS).map(|_| ()),
            DbConn::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|_| ()),
        };
        migrated.map_err(StartupError::Migration)?;
        drop(conn);
        Ok(Self { pool })
    }

    pub fn get(&self) -> Result<PooledConnection<DbManager>, AppError> {
        Ok(self.pool.get()?)
    }

    /// Runs `f` with a pooled connection on the blocking pool, giving up after
    /// [`QUERY_TIMEOUT`]: a database that stalls (accepts connections but never answers) gets
    /// the caller a quick `unavailable`, like one that refuses. The blocking thread finishes (or
    /// fails) on its own when the database answers or the connection breaks.
    pub async fn run<T, F>(&self, f: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConn) -> Result<T, AppError> + Send + 'static,
    {
        let pool = self.pool.clone();
        let asked = std::time::Instant::now();
        let work = actix_web::web::block(move || {
            let metrics = crate::metrics::get();
            let mut conn = pool.get()?;
            let got = std::time::Instant::now();
            metrics
                .db_pool_wait_seconds
                .observe((got - asked).as_secs_f64());
            let done = f(&mut conn);
            metrics
                .db_query_seconds
                .observe(got.elapsed().as_secs_f64());
            done
        });
        match tokio::time::timeout(QUERY_TIMEOUT, work).await {
            Ok(done) => done?,
            Err(_) => Err(AppError::unavailable(format!(
                "no answer from the database within {QUERY_TIMEOUT:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_urls_get_the_timeouts_they_do_not_set() {
        assert_eq!(
            with_pg_params("postgres://u@h/db"),
            "postgres://u@h/db?connect_timeout=3&keepalives=1&keepalives_idle=10\
             &keepalives_interval=3&keepalives_count=3&tcp_user_timeout=10000"
        );
        let own = with_pg_params("postgres://u@h/db?sslmode=require&connect_timeout=9");
        assert!(own.starts_with("postgres://u@h/db?sslmode=require&connect_timeout=9&keepalives=1"));
        assert_eq!(own.matches("connect_timeout").count(), 1);
    }
}
