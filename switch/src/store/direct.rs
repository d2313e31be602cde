//! Whole tables read straight from the SQLite file, for start-up at a million cards
//! (docs/benchmarks.md, "Restart").
//!
//! The store's driver runs SQLite on a thread of its own and hands every row over to the
//! caller's: a million-row table read row by row costs seconds, so [`packed`] reads make the
//! database pack a chunk of rows into one JSON text. Packing and parsing that text were most
//! of a restart's CPU, where SQLite itself needs a fraction of a second to step through the
//! rows. A [`Direct`] connection is a second, read-only connection to the same file, stepped
//! on the caller's thread: each row's columns are read in place, borrowed, with no text in
//! between.
//!
//! It is used only for whole reads of a file database (an in-memory database has no file to
//! open, and PostgreSQL is read packed) and only where the read's consistency allows a
//! second connection: each direct connection holds one read transaction from its first read
//! to its drop, and the reference data's reader checks that it sees the same reference
//! version as the transaction it stands beside (`store::reference::load_records`).
//!
//! A direct read blocks its thread for as long as the table takes (a second or so at a
//! million rows). On a multi-threaded runtime it runs in `block_in_place`, so the tasks
//! queued on that worker move to another; on a single-threaded one (tests), in place.
//!
//! [`packed`]: crate::store::packed

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use crate::store::packed::PackedError;
use crate::store::{Backend, Conn};

/// How long a direct read waits for a lock the database's writers hold.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A read-only connection to the store's SQLite file, in one read transaction.
pub struct Direct {
    // In a mutex only to be `Sync`: a read holds it, and reads of one connection never
    // overlap (a future that holds a `&Direct` across an await must be `Send`).
    conn: std::sync::Mutex<rusqlite::Connection>,
}

impl fmt::Debug for Direct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Direct").finish_non_exhaustive()
    }
}

impl Direct {
    /// A direct connection to the file `conn` reads, if it is a SQLite file (not in memory,
    /// not PostgreSQL). Its read transaction is open; its snapshot is taken at its first read.
    ///
    /// # Errors
    /// The database's error, from either connection.
    pub async fn open(conn: &mut Conn) -> Result<Option<Direct>, PackedError> {
        if Backend::of_conn(conn) != Backend::Sqlite {
            return Ok(None);
        }
        let file: Option<String> =
            sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
                .fetch_optional(&mut *conn)
                .await?;
        // In memory: no file, or (SQLite's `memdb` file system) a name that is not a file.
        let Some(file) = file.filter(|file| std::path::Path::new(file).is_file()) else {
            return Ok(None);
        };
        let open = || {
            let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let conn = rusqlite::Connection::open_with_flags(&file, flags)?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            conn.execute_batch("BEGIN")?;
            Ok::<_, rusqlite::Error>(Direct {
                conn: std::sync::Mutex::new(conn),
            })
        };
        Ok(Some(open()?))
    }

    /// The one integer `sql` selects (the first column of its first row), if it selects a row.
    ///
    /// # Errors
    /// The database's error.
    pub fn integer(&self, sql: &str) -> Result<Option<i64>, PackedError> {
        let conn = self.lock();
        let mut statement = conn.prepare(sql)?;
        let mut rows = statement.query([])?;
        match rows.next()? {
            Some(row) => Ok(row.get::<_, Option<i64>>(0)?),
            None => Ok(None),
        }
    }

    /// Steps through every row `sql` selects and gives each to `each`, which parses it with
    /// [`Row::parse`](crate::store::packed::Row::parse).
    ///
    /// # Errors
    /// The database's error, or the first error `each` returns.
    pub fn rows<E, F>(&self, table: &'static str, sql: &str, mut each: F) -> Result<(), E>
    where
        E: From<PackedError>,
        F: FnMut(crate::store::packed::Row<'_>) -> Result<(), E>,
    {
        self.each(sql, |row| {
            each(crate::store::packed::Row::direct(table, row))
        })
    }

    /// Steps through every row `sql` selects and gives each to `each` as it is.
    ///
    /// # Errors
    /// The database's error, or the first error `each` returns.
    pub fn each<E, F>(&self, sql: &str, mut each: F) -> Result<(), E>
    where
        E: From<PackedError>,
        F: FnMut(&rusqlite::Row<'_>) -> Result<(), E>,
    {
        in_place(|| {
            let conn = self.lock();
            let mut statement = conn.prepare(sql).map_err(PackedError::from)?;
            let mut rows = statement.query([]).map_err(PackedError::from)?;
            while let Some(row) = rows.next().map_err(PackedError::from)? {
                each(row)?;
            }
            Ok(())
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        // A read that failed half-way left the connection as it was: take it back.
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Runs `work`, which blocks its thread, so that it holds up no other task: in
/// `block_in_place` on a multi-threaded runtime, in place otherwise.
fn in_place<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// Parses one row of a direct read as a `T`, its columns in order, borrowing text.
pub(crate) fn parse<'r, T: Deserialize<'r>>(
    table: &'static str,
    row: &'r rusqlite::Row<'r>,
) -> Result<T, PackedError> {
    T::deserialize(RowDe { row }).map_err(|error| PackedError::Row {
        table,
        reason: error.0,
    })
}

/// Why a row did not deserialize.
#[derive(Debug)]
struct DeError(String);

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        DeError(message.to_string())
    }
}

/// A row, given to serde as the sequence of its columns (a tuple, a tuple struct, or a
/// struct whose fields are in column order).
struct RowDe<'r> {
    row: &'r rusqlite::Row<'r>,
}

impl<'de> Deserializer<'de> for RowDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_seq(Columns {
            row: self.row,
            next: 0,
            count: self.row.as_ref().column_count(),
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

/// The columns of a row, in order.
struct Columns<'r> {
    row: &'r rusqlite::Row<'r>,
    next: usize,
    count: usize,
}

impl<'de> SeqAccess<'de> for Columns<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        if self.next >= self.count {
            return Ok(None);
        }
        let index = self.next;
        self.next += 1;
        let value = self
            .row
            .get_ref(index)
            .map_err(|error| DeError(format!("column {index}: {error}")))?;
        seed.deserialize(ValueDe { value, index }).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.count.saturating_sub(self.next))
    }
}

/// One column's value.
struct ValueDe<'r> {
    value: rusqlite::types::ValueRef<'r>,
    index: usize,
}

impl<'de> Deserializer<'de> for ValueDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        use rusqlite::types::ValueRef;
        match self.value {
            ValueRef::Null => visitor.visit_unit(),
            ValueRef::Integer(value) => visitor.visit_i64(value),
            ValueRef::Real(value) => visitor.visit_f64(value),
            ValueRef::Text(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => visitor.visit_borrowed_str(text),
                Err(_) => Err(DeError(format!("column {}: text is not UTF-8", self.index))),
            },
            ValueRef::Blob(bytes) => visitor.visit_borrowed_bytes(bytes),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            rusqlite::types::ValueRef::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

impl From<rusqlite::Error> for PackedError {
    fn from(error: rusqlite::Error) -> Self {
        PackedError::Direct(error)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    // A file database is read directly in `tests/packed.rs`, on both paths.
    #[tokio::test]
    async fn an_in_memory_database_is_read_packed() {
        let pool = crate::store::open("sqlite::memory:").await.unwrap();
        let mut conn = pool.acquire().await.unwrap();
        assert!(Direct::open(&mut conn).await.unwrap().is_none());
        // SQLite's `memdb` file system (the simulation's databases) has no file either.
        let url = "sqlite:///lsw-direct-test?vfs=memdb&mode=rwc";
        let pool = crate::store::connect(url, 1, "").await.unwrap();
        let mut conn = pool.acquire().await.unwrap();
        assert!(Direct::open(&mut conn).await.unwrap().is_none());
    }
}
