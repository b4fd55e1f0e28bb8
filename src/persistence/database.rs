//! The SQLite file: registered clients with their limits, their own limits on routes, their
//! last token level and the levels of their buckets on routes. WAL mode, a
//! schema version in `PRAGMA user_version` with forward migrations; a file that is not a
//! SQLite database, or has a newer schema, is refused and left exactly as it was.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rusqlite::{params, Connection, OpenFlags};

use crate::client::{ClientRecord, Limits};
use crate::clock;

/// The schema this build writes.
pub const SCHEMA_VERSION: i64 = 3;

/// Migrations, in order: `MIGRATIONS[n]` takes the schema from version n to n + 1.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE clients (
        client_id TEXT PRIMARY KEY NOT NULL,
        name TEXT,
        capacity INTEGER NOT NULL,
        rate_per_sec REAL NOT NULL,
        tokens REAL NOT NULL,
        tokens_at_ms INTEGER NOT NULL
    )",
    "CREATE TABLE client_routes (
        client_id TEXT NOT NULL,
        route TEXT NOT NULL,
        capacity INTEGER NOT NULL,
        rate_per_sec REAL NOT NULL,
        PRIMARY KEY (client_id, route)
    )",
    "CREATE TABLE route_tokens (
        client_id TEXT NOT NULL,
        route TEXT NOT NULL,
        capacity INTEGER NOT NULL,
        rate_per_sec REAL NOT NULL,
        tokens REAL NOT NULL,
        tokens_at_ms INTEGER NOT NULL,
        PRIMARY KEY (client_id, route)
    )",
];

/// Why the database cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Refuse to start: the file is not ours to touch.
    #[error("{}: {reason}", path.display())]
    Unusable { path: PathBuf, reason: String },
    /// A read or write failed (locked, read-only, disk full, ...).
    #[error("database {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

/// A registered client as saved, with when its level was recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedClient {
    pub record: ClientRecord,
    /// Wall-clock time of `record.tokens`; the bucket is credited the refill since.
    pub saved_at: SystemTime,
    /// Its buckets on routes.
    pub route_levels: Vec<(RouteLevel, SystemTime)>,
}

/// A registered client's bucket on a route: the limits it was held to and its level.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteLevel {
    pub client_id: String,
    pub route: String,
    pub limits: Limits,
    pub tokens: f64,
}

/// Token levels written together: registered clients' own buckets, and their buckets on routes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Levels {
    pub clients: Vec<(String, f64)>,
    pub routes: Vec<RouteLevel>,
}

impl Levels {
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty() && self.routes.is_empty()
    }
}

/// An open database.
pub struct Database {
    conn: Connection,
    path: PathBuf,
}

impl Database {
    /// Opens (creating the file and its folder if needed), checks and migrates.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let unusable = |reason: String| DbError::Unusable {
            path: path.to_path_buf(),
            reason,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| unusable(format!("cannot create folder {}: {e}", parent.display())))?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| unusable(e.to_string()))?;
        // Read before writing anything: a foreign file fails here and stays untouched.
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|e| unusable(format!("not a usable SQLite database ({e})")))?;
        if version > SCHEMA_VERSION {
            return Err(unusable(format!(
                "schema version {version} is newer than this build's {SCHEMA_VERSION}; refusing to touch it"
            )));
        }
        conn.busy_timeout(Duration::from_millis(500))
            .and_then(|()| conn.pragma_update(None, "journal_mode", "WAL"))
            .map_err(|e| unusable(format!("cannot enable WAL: {e}")))?;
        let mut db = Self {
            conn,
            path: path.to_path_buf(),
        };
        db.migrate(version)?;
        Ok(db)
    }

    fn migrate(&mut self, from: i64) -> Result<(), DbError> {
        let conn = &mut self.conn;
        let result = (|| {
            for (version, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
                let tx = conn.transaction()?;
                tx.execute_batch(sql)?;
                tx.pragma_update(None, "user_version", version as i64 + 1)?;
                tx.commit()?;
            }
            Ok(())
        })();
        result.map_err(|e| self.io(e))
    }

    fn io(&self, source: rusqlite::Error) -> DbError {
        DbError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Every saved client.
    pub fn load_all(&self) -> Result<Vec<SavedClient>, DbError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT client_id, name, capacity, rate_per_sec, tokens, tokens_at_ms FROM clients",
            )
            .map_err(|e| self.io(e))?;
        let rows = stmt
            .query_map([], |row| {
                let capacity: i64 = row.get(2)?;
                let at_ms: i64 = row.get(5)?;
                Ok(SavedClient {
                    record: ClientRecord {
                        client_id: row.get(0)?,
                        name: row.get(1)?,
                        limits: Limits {
                            capacity: capacity.max(1) as u64,
                            rate_per_sec: row.get(3)?,
                        },
                        tokens: row.get(4)?,
                        routes: BTreeMap::new(),
                    },
                    saved_at: from_unix_ms(at_ms),
                    route_levels: Vec::new(),
                })
            })
            .map_err(|e| self.io(e))?;
        let mut clients: Vec<SavedClient> =
            rows.collect::<Result<_, _>>().map_err(|e| self.io(e))?;
        let mut routes = self.load_routes()?;
        let mut levels = self.load_route_levels()?;
        for client in &mut clients {
            let id = &client.record.client_id;
            client.record.routes = routes.remove(id).unwrap_or_default();
            client.route_levels = levels.remove(id).unwrap_or_default();
        }
        Ok(clients)
    }

    /// The levels of clients' buckets on routes, by client id.
    fn load_route_levels(&self) -> Result<HashMap<String, Vec<(RouteLevel, SystemTime)>>, DbError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT client_id, route, capacity, rate_per_sec, tokens, tokens_at_ms
                 FROM route_tokens",
            )
            .map_err(|e| self.io(e))?;
        let rows = stmt
            .query_map([], |row| {
                let capacity: i64 = row.get(2)?;
                let level = RouteLevel {
                    client_id: row.get(0)?,
                    route: row.get(1)?,
                    limits: Limits::new(capacity.max(1) as u64, row.get(3)?),
                    tokens: row.get(4)?,
                };
                Ok((level, from_unix_ms(row.get(5)?)))
            })
            .map_err(|e| self.io(e))?;
        let mut levels: HashMap<String, Vec<(RouteLevel, SystemTime)>> = HashMap::new();
        for row in rows {
            let (level, at) = row.map_err(|e| self.io(e))?;
            levels
                .entry(level.client_id.clone())
                .or_default()
                .push((level, at));
        }
        Ok(levels)
    }

    /// Every client's own limits on routes, by client id.
    fn load_routes(&self) -> Result<HashMap<String, BTreeMap<String, Limits>>, DbError> {
        let mut stmt = self
            .conn
            .prepare("SELECT client_id, route, capacity, rate_per_sec FROM client_routes")
            .map_err(|e| self.io(e))?;
        let rows = stmt
            .query_map([], |row| {
                let capacity: i64 = row.get(2)?;
                let limits = Limits::new(capacity.max(1) as u64, row.get(3)?);
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, limits))
            })
            .map_err(|e| self.io(e))?;
        let mut routes: HashMap<String, BTreeMap<String, Limits>> = HashMap::new();
        for row in rows {
            let (client, route, limits) = row.map_err(|e| self.io(e))?;
            routes.entry(client).or_default().insert(route, limits);
        }
        Ok(routes)
    }

    /// Inserts or replaces a client with its limits on routes, in one transaction (committed
    /// when this returns).
    pub fn save_client(&mut self, record: &ClientRecord, at: SystemTime) -> Result<(), DbError> {
        let conn = &mut self.conn;
        let result = (|| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO clients (client_id, name, capacity, rate_per_sec, tokens, tokens_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(client_id) DO UPDATE SET name = ?2, capacity = ?3, rate_per_sec = ?4,
                   tokens = ?5, tokens_at_ms = ?6",
                params![
                    record.client_id,
                    record.name,
                    record.limits.capacity as i64,
                    record.limits.rate_per_sec,
                    record.tokens,
                    unix_ms(at)
                ],
            )?;
            tx.execute(
                "DELETE FROM client_routes WHERE client_id = ?1",
                params![record.client_id],
            )?;
            for (route, limits) in &record.routes {
                tx.execute(
                    "INSERT INTO client_routes (client_id, route, capacity, rate_per_sec)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![
                        record.client_id,
                        route,
                        limits.capacity as i64,
                        limits.rate_per_sec
                    ],
                )?;
            }
            tx.commit()
        })();
        result.map_err(|e| self.io(e))
    }

    /// Deletes a client and its limits on routes; whether it existed.
    pub fn delete_client(&mut self, client_id: &str) -> Result<bool, DbError> {
        let conn = &mut self.conn;
        let result = (|| {
            let tx = conn.transaction()?;
            for table in ["client_routes", "route_tokens"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE client_id = ?1"),
                    params![client_id],
                )?;
            }
            let deleted = tx.execute(
                "DELETE FROM clients WHERE client_id = ?1",
                params![client_id],
            )?;
            tx.commit().map(|()| deleted > 0)
        })();
        result.map_err(|e| self.io(e))
    }

    /// Writes many token levels in one transaction (a route level only for a client saved).
    pub fn save_tokens(&mut self, levels: &Levels, at: SystemTime) -> Result<(), DbError> {
        let conn = &mut self.conn;
        let result = (|| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE clients SET tokens = ?2, tokens_at_ms = ?3 WHERE client_id = ?1",
                )?;
                for (id, tokens) in &levels.clients {
                    stmt.execute(params![id, tokens, unix_ms(at)])?;
                }
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO route_tokens
                       (client_id, route, capacity, rate_per_sec, tokens, tokens_at_ms)
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS
                       (SELECT 1 FROM clients WHERE client_id = ?1)
                     ON CONFLICT(client_id, route) DO UPDATE SET capacity = ?3,
                       rate_per_sec = ?4, tokens = ?5, tokens_at_ms = ?6",
                )?;
                for level in &levels.routes {
                    stmt.execute(params![
                        level.client_id,
                        level.route,
                        level.limits.capacity as i64,
                        level.limits.rate_per_sec,
                        level.tokens,
                        unix_ms(at)
                    ])?;
                }
            }
            tx.commit()
        })();
        result.map_err(|e| self.io(e))
    }
}

fn from_unix_ms(ms: i64) -> SystemTime {
    clock::from_unix_ms(u64::try_from(ms).unwrap_or(0))
}

/// SQLite integers are signed; the Unix milliseconds of any real time fit.
fn unix_ms(at: SystemTime) -> i64 {
    i64::try_from(clock::unix_ms(at)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn record(id: &str, tokens: f64) -> ClientRecord {
        ClientRecord {
            client_id: id.into(),
            name: Some("N".into()),
            limits: Limits {
                capacity: 10,
                rate_per_sec: 2.0,
            },
            tokens,
            routes: BTreeMap::new(),
        }
    }

    /// A client's own limits on routes are saved with it, replaced with it and deleted with it.
    #[test]
    fn round_trips_limits_on_routes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lb.sqlite3");
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut gold = record("gold", 10.0);
        gold.routes.insert("search".into(), Limits::new(50, 5.0));
        gold.routes.insert("export".into(), Limits::new(2, 0.1));
        {
            let mut db = Database::open(&path).expect("open");
            db.save_client(&gold, at).expect("save");
            db.save_client(&record("plain", 10.0), at).expect("save");
        }
        let db = Database::open(&path).expect("reopen");
        let saved = db.load_all().expect("load");
        let loaded = saved
            .iter()
            .find(|c| c.record.client_id == "gold")
            .expect("gold");
        assert_eq!(loaded.record.routes, gold.routes);
        let mut db = db;
        gold.routes.remove("export");
        db.save_client(&gold, at).expect("save");
        let saved = db.load_all().expect("load");
        let loaded = saved
            .iter()
            .find(|c| c.record.client_id == "gold")
            .expect("gold");
        assert_eq!(loaded.record.routes.len(), 1);
        assert!(db.delete_client("gold").expect("delete"));
        assert!(db.load_routes().expect("routes").is_empty());
    }

    /// Clients, their token levels and those of their buckets on routes survive closing and
    /// reopening the file; a route level of a client not saved is not written, and a deleted
    /// client's go with it.
    #[test]
    fn round_trips_clients_and_levels() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/lb.sqlite3");
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let level = |id: &str, tokens| RouteLevel {
            client_id: id.into(),
            route: "export".into(),
            limits: Limits::new(5, 0.5),
            tokens,
        };
        {
            let mut db = Database::open(&path).expect("open");
            db.save_client(&record("a", 10.0), at).expect("save");
            db.save_client(&record("b", 10.0), at).expect("save");
            let levels = Levels {
                clients: vec![("a".into(), 3.5)],
                routes: vec![level("a", 1.5), level("b", 2.0), level("stranger", 0.0)],
            };
            db.save_tokens(&levels, at).expect("tokens");
            assert!(db.delete_client("b").expect("delete"));
            assert!(!db.delete_client("b").expect("delete"));
        }
        let db = Database::open(&path).expect("reopen");
        let saved = db.load_all().expect("load");
        assert_eq!(
            saved,
            [SavedClient {
                record: record("a", 3.5),
                saved_at: at,
                route_levels: vec![(level("a", 1.5), at)],
            }]
        );
    }

    /// A file that is not SQLite, or has a newer schema, is refused and left byte for byte.
    #[test]
    fn refuses_foreign_and_newer_files_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let junk = dir.path().join("junk.sqlite3");
        std::fs::write(
            &junk,
            b"this is not a database, it is a shopping list\n".repeat(100),
        )
        .expect("write");
        let before = std::fs::read(&junk).expect("read");
        let err = Database::open(&junk).err().expect("refused");
        assert!(
            err.to_string().contains("not a usable SQLite database"),
            "{err}"
        );
        assert_eq!(std::fs::read(&junk).expect("read"), before);

        let newer = dir.path().join("newer.sqlite3");
        let conn = Connection::open(&newer).expect("create");
        conn.pragma_update(None, "user_version", 99)
            .expect("version");
        drop(conn);
        let err = Database::open(&newer).err().expect("refused");
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }
}
