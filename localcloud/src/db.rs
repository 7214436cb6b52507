//! The local cloud's state: one SQLite database in WAL mode, so it survives a restart of the
//! local cloud and a `kill -9` at any point (every request's writes are one transaction).
//!
//! Resources are stored as the JSON documents ARM returns, keyed by their lowercased id; keys
//! keep their private material (PKCS#8 DER) beside the public document.

use crate::error::LocalCloudError;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS principals (
    object_id TEXT PRIMARY KEY, client_id TEXT NOT NULL UNIQUE, secret TEXT,
    kind TEXT NOT NULL, name TEXT NOT NULL, tenant_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS resources (
    id TEXT PRIMARY KEY, type TEXT NOT NULL, name TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS resources_type ON resources(type, name);
CREATE TABLE IF NOT EXISTS keys (
    vault TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL, seq INTEGER NOT NULL,
    doc TEXT NOT NULL, private_der BLOB, PRIMARY KEY (vault, name, version));
CREATE TABLE IF NOT EXISTS operations (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS operation_faults (resource TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS etcd (
    cluster TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
    create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL, PRIMARY KEY (cluster, key));
CREATE TABLE IF NOT EXISTS etcd_rev (cluster TEXT PRIMARY KEY, rev INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, method TEXT NOT NULL,
    host TEXT NOT NULL, path TEXT NOT NULL, status INTEGER NOT NULL, caller TEXT NOT NULL,
    fault TEXT NOT NULL, query TEXT NOT NULL DEFAULT '', secret_data INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS role_definitions (guid TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS group_members (
    group_id TEXT NOT NULL, member_id TEXT NOT NULL, PRIMARY KEY (group_id, member_id));
CREATE INDEX IF NOT EXISTS group_members_member ON group_members(member_id);
";

/// Columns added after the first release of the schema: (table, column definition).
const ADDED_COLUMNS: &[(&str, &str)] = &[
    ("requests", "query TEXT NOT NULL DEFAULT ''"),
    ("requests", "secret_data INTEGER NOT NULL DEFAULT 0"),
];

/// A principal that can hold roles and (for apps) obtain tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub object_id: String,
    pub client_id: String,
    /// Client secret for client-credential apps; managed identities have none.
    pub secret: Option<String>,
    /// `ServicePrincipal` (apps and managed identities), `User`, or `Group` (no credentials).
    pub kind: String,
    pub name: String,
    pub tenant_id: String,
}

/// One stored key version.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub vault: String,
    pub name: String,
    pub version: String,
    pub seq: i64,
    /// The `KeyBundle` JSON (public parts only).
    pub doc: Value,
    pub private_der: Option<Vec<u8>>,
}

/// One request as the log keeps it: never a body, never a header value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RequestRecord {
    pub seq: i64,
    pub at_ms: i64,
    pub method: String,
    pub host: String,
    pub path: String,
    pub status: u16,
    pub caller: String,
    pub fault: String,
    /// The query string (api-version, `limit`, `continue`, …); never carries a secret.
    pub query: String,
    /// Whether the response carried a Kubernetes secret's data.
    pub secret_data: bool,
}

pub struct Db {
    conn: Mutex<Connection>,
}

pub type DbResult<T> = Result<T, rusqlite::Error>;

fn parse(doc: String) -> DbResult<Value> {
    serde_json::from_str(&doc).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

impl Db {
    pub fn open(path: &Path) -> Result<Self, LocalCloudError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        for (table, column) in ADDED_COLUMNS {
            // A state directory from an older local cloud lacks the column; a newer one has it.
            if let Err(e) = conn.execute(&format!("ALTER TABLE {table} ADD COLUMN {column}"), []) {
                if !e.to_string().contains("duplicate column") {
                    return Err(e.into());
                }
            }
        }
        Ok(Db { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one transaction.
    pub fn tx<T>(&self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> DbResult<T>) -> DbResult<T> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    pub fn meta(&self, k: &str) -> DbResult<Option<String>> {
        self.conn()
            .query_row("SELECT v FROM meta WHERE k = ?1", [k], |r| r.get(0))
            .optional()
    }

    pub fn set_meta(&self, k: &str, v: &str) -> DbResult<()> {
        self.conn()
            .execute(
                "INSERT INTO meta (k, v) VALUES (?1, ?2) ON CONFLICT(k) DO UPDATE SET v = ?2",
                [k, v],
            )
            .map(drop)
    }

    /// Stores `v` under `k` unless `k` already has a value; returns the value `k` holds after.
    pub fn insert_meta_if_absent(&self, k: &str, v: &str) -> DbResult<String> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO meta (k, v) VALUES (?1, ?2) ON CONFLICT(k) DO NOTHING",
            [k, v],
        )?;
        conn.query_row("SELECT v FROM meta WHERE k = ?1", [k], |r| r.get(0))
    }

    pub fn insert_principal(&self, p: &Principal) -> DbResult<()> {
        self.conn()
            .execute(
                "INSERT OR IGNORE INTO principals (object_id, client_id, secret, kind, name, tenant_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![p.object_id, p.client_id, p.secret, p.kind, p.name, p.tenant_id],
            )
            .map(drop)
    }

    fn principal_where(&self, column: &str, value: &str) -> DbResult<Option<Principal>> {
        let sql =
            format!("SELECT object_id, client_id, secret, kind, name, tenant_id FROM principals WHERE {column} = ?1");
        self.conn()
            .query_row(&sql, [value], |r| {
                Ok(Principal {
                    object_id: r.get(0)?,
                    client_id: r.get(1)?,
                    secret: r.get(2)?,
                    kind: r.get(3)?,
                    name: r.get(4)?,
                    tenant_id: r.get(5)?,
                })
            })
            .optional()
    }

    pub fn principal_by_client_id(&self, client_id: &str) -> DbResult<Option<Principal>> {
        self.principal_where("client_id", client_id)
    }

    pub fn principal_by_object_id(&self, object_id: &str) -> DbResult<Option<Principal>> {
        self.principal_where("object_id", object_id)
    }

    pub fn resource(&self, id: &str) -> DbResult<Option<Value>> {
        let doc: Option<String> = self
            .conn()
            .query_row(
                "SELECT doc FROM resources WHERE id = ?1",
                [id.to_ascii_lowercase()],
                |r| r.get(0),
            )
            .optional()?;
        doc.map(parse).transpose()
    }

    pub fn put_resource(&self, id: &str, rtype: &str, name: &str, doc: &Value) -> DbResult<()> {
        self.conn()
            .execute(
                "INSERT INTO resources (id, type, name, doc) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET doc = ?4",
                params![
                    id.to_ascii_lowercase(),
                    rtype.to_ascii_lowercase(),
                    name.to_ascii_lowercase(),
                    doc.to_string()
                ],
            )
            .map(drop)
    }

    /// Resources of `rtype` whose id starts with `prefix` (both case-insensitive), by id.
    pub fn resources(&self, rtype: &str, prefix: &str) -> DbResult<Vec<Value>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT doc FROM resources WHERE type = ?1 AND substr(id, 1, length(?2)) = ?2 ORDER BY id")?;
        let rows = stmt.query_map([rtype.to_ascii_lowercase(), prefix.to_ascii_lowercase()], |r| {
            r.get::<_, String>(0)
        })?;
        rows.map(|r| r.and_then(parse)).collect()
    }

    /// Removes the resource `id`; whether it existed.
    pub fn delete_resource(&self, id: &str) -> DbResult<bool> {
        Ok(self
            .conn()
            .execute("DELETE FROM resources WHERE id = ?1", [id.to_ascii_lowercase()])?
            > 0)
    }

    /// The custom role definition `guid` (lowercase), as stored by [`Db::put_role_definition`].
    pub fn role_definition(&self, guid: &str) -> DbResult<Option<Value>> {
        let doc: Option<String> = self
            .conn()
            .query_row("SELECT doc FROM role_definitions WHERE guid = ?1", [guid], |r| r.get(0))
            .optional()?;
        doc.map(parse).transpose()
    }

    /// Every custom role definition, by GUID.
    pub fn role_definitions(&self) -> DbResult<Vec<Value>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT doc FROM role_definitions ORDER BY guid")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|r| r.and_then(parse)).collect()
    }

    /// Creates or replaces custom role definition `guid` (lowercase).
    pub fn put_role_definition(&self, guid: &str, doc: &Value) -> DbResult<()> {
        self.conn()
            .execute(
                "INSERT INTO role_definitions (guid, doc) VALUES (?1, ?2) ON CONFLICT(guid) DO UPDATE SET doc = ?2",
                params![guid, doc.to_string()],
            )
            .map(drop)
    }

    /// Records that `member` belongs to `group` (object ids, lowercased); idempotent.
    pub fn add_group_member(&self, group: &str, member: &str) -> DbResult<()> {
        self.conn()
            .execute(
                "INSERT OR IGNORE INTO group_members (group_id, member_id) VALUES (?1, ?2)",
                [group.to_ascii_lowercase(), member.to_ascii_lowercase()],
            )
            .map(drop)
    }

    /// Removes `member` from `group`; whether it was a member.
    pub fn remove_group_member(&self, group: &str, member: &str) -> DbResult<bool> {
        Ok(self.conn().execute(
            "DELETE FROM group_members WHERE group_id = ?1 AND member_id = ?2",
            [group.to_ascii_lowercase(), member.to_ascii_lowercase()],
        )? > 0)
    }

    /// The groups `member` belongs to directly (lowercase object ids).
    pub fn groups_of(&self, member: &str) -> DbResult<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT group_id FROM group_members WHERE member_id = ?1 ORDER BY group_id")?;
        let rows = stmt.query_map([member.to_ascii_lowercase()], |r| r.get(0))?;
        rows.collect()
    }

    /// Resources of `rtype` named `name` anywhere (for globally unique names such as vaults).
    pub fn resources_named(&self, rtype: &str, name: &str) -> DbResult<Vec<Value>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT doc FROM resources WHERE type = ?1 AND name = ?2")?;
        let rows = stmt.query_map([rtype.to_ascii_lowercase(), name.to_ascii_lowercase()], |r| {
            r.get::<_, String>(0)
        })?;
        rows.map(|r| r.and_then(parse)).collect()
    }

    pub fn put_key(&self, k: &KeyRecord) -> DbResult<()> {
        self.conn()
            .execute(
                "INSERT INTO keys (vault, name, version, seq, doc, private_der) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(vault, name, version) DO UPDATE SET doc = ?5",
                params![
                    k.vault.to_ascii_lowercase(),
                    k.name.to_ascii_lowercase(),
                    k.version,
                    k.seq,
                    k.doc.to_string(),
                    k.private_der
                ],
            )
            .map(drop)
    }

    /// Every version of key `name` in `vault`, oldest first.
    pub fn key_versions(&self, vault: &str, name: &str) -> DbResult<Vec<KeyRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT vault, name, version, seq, doc, private_der FROM keys WHERE vault = ?1 AND name = ?2 ORDER BY seq",
        )?;
        let rows = stmt.query_map([vault.to_ascii_lowercase(), name.to_ascii_lowercase()], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get::<_, String>(4)?,
                r.get(5)?,
            ))
        })?;
        rows.map(|r| {
            let (vault, name, version, seq, doc, private_der) = r?;
            Ok(KeyRecord {
                vault,
                name,
                version,
                seq,
                doc: parse(doc)?,
                private_der,
            })
        })
        .collect()
    }

    /// Names of the keys in `vault`.
    pub fn key_names(&self, vault: &str) -> DbResult<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT DISTINCT name FROM keys WHERE vault = ?1 ORDER BY name")?;
        let rows = stmt.query_map([vault.to_ascii_lowercase()], |r| r.get(0))?;
        rows.collect()
    }

    pub fn next_key_seq(&self) -> DbResult<i64> {
        self.conn()
            .query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM keys", [], |r| r.get(0))
    }

    pub fn operation(&self, id: &str) -> DbResult<Option<Value>> {
        let doc: Option<String> = self
            .conn()
            .query_row("SELECT doc FROM operations WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        doc.map(parse).transpose()
    }

    pub fn put_operation(&self, id: &str, doc: &Value) -> DbResult<()> {
        self.conn()
            .execute(
                "INSERT INTO operations (id, doc) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET doc = ?2",
                params![id, doc.to_string()],
            )
            .map(drop)
    }

    /// The operation faults armed for `resource` (lowercased id), if any.
    pub fn operation_fault(&self, resource: &str) -> DbResult<Option<Value>> {
        let doc: Option<String> = self
            .conn()
            .query_row(
                "SELECT doc FROM operation_faults WHERE resource = ?1",
                [resource.to_ascii_lowercase()],
                |r| r.get(0),
            )
            .optional()?;
        doc.map(parse).transpose()
    }

    /// Stores (or, with `None`, removes) the operation faults of `resource`.
    pub fn set_operation_fault(&self, resource: &str, doc: Option<&Value>) -> DbResult<()> {
        let id = resource.to_ascii_lowercase();
        let conn = self.conn();
        match doc {
            Some(doc) => conn.execute(
                "INSERT INTO operation_faults (resource, doc) VALUES (?1, ?2) ON CONFLICT(resource) DO UPDATE SET doc = ?2",
                params![id, doc.to_string()],
            ),
            None => conn.execute("DELETE FROM operation_faults WHERE resource = ?1", [id]),
        }
        .map(drop)
    }

    /// Every armed operation fault, as `(resource, doc)`.
    pub fn operation_faults(&self) -> DbResult<Vec<(String, Value)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT resource, doc FROM operation_faults ORDER BY resource")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        rows.map(|r| {
            let (id, doc) = r?;
            Ok((id, parse(doc)?))
        })
        .collect()
    }

    pub fn log_request(&self, r: &RequestRecord) -> DbResult<()> {
        self.conn()
            .execute(
                "INSERT INTO requests (at_ms, method, host, path, status, caller, fault, query, secret_data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![r.at_ms, r.method, r.host, r.path, r.status, r.caller, r.fault, r.query, r.secret_data],
            )
            .map(drop)
    }

    /// Requests logged after `seq`, oldest first.
    pub fn requests_after(&self, seq: i64) -> DbResult<Vec<RequestRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT seq, at_ms, method, host, path, status, caller, fault, query, secret_data FROM requests WHERE seq > ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map([seq], |r| {
            Ok(RequestRecord {
                seq: r.get(0)?,
                at_ms: r.get(1)?,
                method: r.get(2)?,
                host: r.get(3)?,
                path: r.get(4)?,
                status: r.get(5)?,
                caller: r.get(6)?,
                fault: r.get(7)?,
                query: r.get(8)?,
                secret_data: r.get(9)?,
            })
        })?;
        rows.collect()
    }
}

/// One key of a cluster's etcd-like store.
#[derive(Debug, Clone)]
pub struct EtcdEntry {
    pub key: String,
    pub value: Vec<u8>,
    pub create_rev: i64,
    pub mod_rev: i64,
}

/// Why a conditional etcd write did not happen.
#[derive(Debug)]
pub enum EtcdWriteError {
    /// The key's `mod_rev` is not the expected one (or it exists when creating).
    Conflict,
    Db(rusqlite::Error),
}

impl From<rusqlite::Error> for EtcdWriteError {
    fn from(e: rusqlite::Error) -> Self {
        EtcdWriteError::Db(e)
    }
}

fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<EtcdEntry> {
    Ok(EtcdEntry {
        key: r.get(0)?,
        value: r.get(1)?,
        create_rev: r.get(2)?,
        mod_rev: r.get(3)?,
    })
}

impl Db {
    /// The cluster's current revision.
    pub fn etcd_rev(&self, cluster: &str) -> DbResult<i64> {
        Ok(self
            .conn()
            .query_row("SELECT rev FROM etcd_rev WHERE cluster = ?1", [cluster], |r| r.get(0))
            .optional()?
            .unwrap_or(1))
    }

    pub fn etcd_get(&self, cluster: &str, key: &str) -> DbResult<Option<EtcdEntry>> {
        self.conn()
            .query_row(
                "SELECT key, value, create_rev, mod_rev FROM etcd WHERE cluster = ?1 AND key = ?2",
                [cluster, key],
                entry,
            )
            .optional()
    }

    /// Entries under `prefix` with keys after `after`, in key order, at most `limit`.
    pub fn etcd_list(&self, cluster: &str, prefix: &str, after: &str, limit: i64) -> DbResult<Vec<EtcdEntry>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT key, value, create_rev, mod_rev FROM etcd WHERE cluster = ?1 AND substr(key, 1, length(?2)) = ?2 AND key > ?3 ORDER BY key LIMIT ?4",
        )?;
        let rows = stmt.query_map(rusqlite::params![cluster, prefix, after, limit], entry)?;
        rows.collect()
    }

    pub fn etcd_count(&self, cluster: &str, prefix: &str) -> DbResult<i64> {
        self.conn().query_row(
            "SELECT COUNT(*) FROM etcd WHERE cluster = ?1 AND substr(key, 1, length(?2)) = ?2",
            [cluster, prefix],
            |r| r.get(0),
        )
    }

    /// Writes `value` if the key's `mod_rev` is `expected` (`Some(0)`: must not exist; `None`:
    /// unconditional). Returns the new revision.
    pub fn etcd_put(
        &self,
        cluster: &str,
        key: &str,
        value: &[u8],
        expected: Option<i64>,
    ) -> Result<i64, EtcdWriteError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let current: Option<(i64, i64)> = tx
            .query_row(
                "SELECT create_rev, mod_rev FROM etcd WHERE cluster = ?1 AND key = ?2",
                [cluster, key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match (expected, current) {
            (Some(0), Some(_)) => return Err(EtcdWriteError::Conflict),
            (Some(e), Some((_, m))) if e != 0 && e != m => return Err(EtcdWriteError::Conflict),
            (Some(e), None) if e != 0 => return Err(EtcdWriteError::Conflict),
            _ => {}
        }
        let rev: i64 = tx
            .query_row("SELECT rev FROM etcd_rev WHERE cluster = ?1", [cluster], |r| r.get(0))
            .optional()?
            .unwrap_or(1)
            + 1;
        tx.execute(
            "INSERT INTO etcd_rev (cluster, rev) VALUES (?1, ?2) ON CONFLICT(cluster) DO UPDATE SET rev = ?2",
            rusqlite::params![cluster, rev],
        )?;
        let create = current.map_or(rev, |(c, _)| c);
        tx.execute(
            "INSERT INTO etcd (cluster, key, value, create_rev, mod_rev) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(cluster, key) DO UPDATE SET value = ?3, mod_rev = ?5",
            rusqlite::params![cluster, key, value, create, rev],
        )?;
        tx.commit()?;
        Ok(rev)
    }

    pub fn etcd_delete(&self, cluster: &str, key: &str) -> DbResult<bool> {
        Ok(self
            .conn()
            .execute("DELETE FROM etcd WHERE cluster = ?1 AND key = ?2", [cluster, key])?
            > 0)
    }
}
