//! Storage: one diesel codebase over Postgres and embedded SQLite. The backend is chosen
//! explicitly by the URL scheme, never by trying one and then the other.
pub mod calls;
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
            DatabaseUrl::Postgres(url) => diesel::PgConnection::establish(url)
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

    /// Runs `f` with a pooled connection on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConn) -> Result<T, AppError> + Send + 'static,
    {
        let pool = self.pool.clone();
        actix_web::web::block(move || {
            let mut conn = pool.get()?;
            f(&mut conn)
        })
        .await?
    }

    /// Runs `f` on the blocking pool without waiting for it; failures are logged. For writes
    /// an actor must not wait on, such as `last_seen`.
    pub fn spawn<F>(&self, f: F)
    where
        F: FnOnce(&mut DbConn) -> Result<(), AppError> + Send + 'static,
    {
        let pool = self.pool.clone();
        actix_web::rt::task::spawn_blocking(move || {
            if let Err(e) = pool
                .get()
                .map_err(AppError::from)
                .and_then(|mut conn| f(&mut conn))
            {
                log::error!("background database write failed: {e}");
            }
        });
    }
}
