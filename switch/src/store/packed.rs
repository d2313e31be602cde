//! Large tables read in packed chunks, for start-up at a million cards (docs/benchmarks.md,
//! "Restart").
//!
//! Read row by row, a million-row table costs the driver a hand-off between its thread and
//! ours and a copy of every value per row: about ten seconds per few million rows, where the
//! database itself needs a fraction of a second. Packed, the database writes a chunk of rows
//! as one text value: one JSON array per row, a newline after each (a JSON stream), in key
//! order. The caller parses a chunk in one pass, borrowing its text where it can. A table is
//! read in ranges of its integer key ([`CHUNK_KEYS`] keys each), one statement for all of
//! them: the database packs the next chunk on its connection's thread while the caller parses
//! this one, and only a few chunks' text is held at once.
//!
//! Both backends pack: SQLite with `json_array` and `group_concat`, PostgreSQL with
//! `json_build_array` and `string_agg`, ordered by the key when the caller needs the order. Blobs are packed as hexadecimal
//! ([`hex`] writes the expression, [`unhex`] reads it back).

use futures_util::TryStreamExt;
use serde::Deserialize;

use crate::store::{Backend, Conn, Db};

/// Keys per chunk: 20,000 rows of a card's width are about 2.5 MB of text.
pub const CHUNK_KEYS: i64 = 20_000;

/// One packed read: a row's columns, where they come from, and the integer key that orders
/// and chunks them.
#[derive(Debug, Clone, Copy)]
pub struct Packing<'a> {
    /// The table, for errors.
    pub table: &'static str,
    /// One SQL expression per column, in the order the row type reads them.
    pub columns: &'a [&'a str],
    /// `FROM … WHERE <condition>`: the chunk's range is added to the condition with `AND`.
    pub from: &'a str,
    /// The integer key (e.g. `c.id`): chunks are ranges of it.
    pub key: &'a str,
    /// Whether the rows must come in key order (for a list the caller keeps). Rows bound
    /// for a map need not: sorting them costs the database a temporary b-tree per chunk,
    /// about a third of its time at a million rows.
    pub ordered: bool,
}

/// Why a packed read failed.
#[derive(Debug, thiserror::Error)]
pub enum PackedError {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The database failed under a direct read (`store::direct`).
    #[error("database (direct read): {0}")]
    Direct(rusqlite::Error),
    /// A packed row does not parse as the row type: the database holds a value the switch
    /// never writes.
    #[error("{table}: a stored row does not read back: {reason}")]
    Row {
        /// The table.
        table: &'static str,
        /// The parser's message (it names the column's position in the row).
        reason: String,
    },
}

impl Packing<'_> {
    /// The aggregate that packs this packing's rows, in key order, as one text value.
    fn aggregate(&self, backend: Backend) -> String {
        let columns = self.columns.join(", ");
        let order = if self.ordered {
            format!(" ORDER BY {}", self.key)
        } else {
            String::new()
        };
        let row = array(backend, &columns);
        match backend {
            Backend::Sqlite => format!("group_concat({row}, char(10){order})"),
            Backend::Postgres => format!("string_agg({row}::text, E'\\n'{order})"),
        }
    }

    /// The plain statement a direct read steps through: the columns, row by row, in key
    /// order when asked.
    fn sql_direct(&self) -> String {
        let order = if self.ordered {
            format!(" ORDER BY {}", self.key)
        } else {
            String::new()
        };
        format!("SELECT {} {}{order}", self.columns.join(", "), self.from)
    }

    /// The statement that packs every row of `from` in one value.
    fn sql_one(&self, backend: Backend) -> String {
        format!("SELECT {} {}", self.aggregate(backend), self.from)
    }

    /// The statement that packs the rows of `from` whose keys are in `low..=high`, one value
    /// per range of [`CHUNK_KEYS`] keys, ranges in ascending order. It is one statement so
    /// the database packs the next chunk while the caller parses the one before.
    fn sql_ranges(&self, backend: Backend, low: i64, high: i64) -> String {
        let (key, from, step) = (self.key, self.from, CHUNK_KEYS);
        let first = match backend {
            Backend::Sqlite => format!("{low}"),
            Backend::Postgres => format!("{low}::bigint"),
        };
        format!(
            "WITH RECURSIVE ranges(low) AS (SELECT {first} UNION ALL \
             SELECT low + {step} FROM ranges WHERE low <= {high} - {step}) \
             SELECT (SELECT {aggregate} {from} AND {key} >= ranges.low \
             AND {key} < ranges.low + {step}) FROM ranges",
            aggregate = self.aggregate(backend),
        )
    }
}

/// One row of a read, packed (a JSON array) or direct (`store::direct`): parse it with
/// [`Row::parse`].
pub struct Row<'r>(Source<'r>);

enum Source<'r> {
    Packed {
        table: &'static str,
        text: &'r str,
    },
    Direct {
        table: &'static str,
        row: &'r rusqlite::Row<'r>,
    },
}

impl<'r> Row<'r> {
    /// A row of a direct read of `table`.
    pub(crate) fn direct(table: &'static str, row: &'r rusqlite::Row<'r>) -> Row<'r> {
        Row(Source::Direct { table, row })
    }

    /// The row as a `T` (a tuple or a struct, its fields in column order), borrowing text
    /// from the row where it can (packed: where the text has no JSON escapes).
    ///
    /// # Errors
    /// [`PackedError::Row`] when a column does not fit `T`.
    pub fn parse<T: Deserialize<'r>>(&self) -> Result<T, PackedError> {
        match self.0 {
            Source::Packed { table, text } => {
                serde_json::from_str(text).map_err(|error| PackedError::Row {
                    table,
                    reason: error.to_string(),
                })
            }
            Source::Direct { table, row } => crate::store::direct::parse(table, row),
        }
    }
}

/// Reads the rows `packing` names and gives each to `each` (parse it with [`Row::parse`]).
/// With `whole`, the whole table is read: straight from the file when `direct` is given
/// (`store::direct`), otherwise packed in key ranges of [`CHUNK_KEYS`]. Without `whole` (a
/// condition that already takes few rows), packed as one value. `query` binds the
/// condition's parameters, if any, to a statement's text; a whole read has none.
///
/// # Errors
/// The database's error, or the first error `each` returns.
pub async fn read<E, Q, F>(
    conn: &mut Conn,
    packing: &Packing<'_>,
    whole: bool,
    direct: Option<&crate::store::direct::Direct>,
    query: Q,
    mut each: F,
) -> Result<(), E>
where
    E: From<PackedError>,
    Q: for<'s> Fn(&'s str) -> sqlx::query::Query<'s, Db, sqlx::any::AnyArguments<'s>>,
    F: FnMut(Row<'_>) -> Result<(), E>,
{
    if let (true, Some(direct)) = (whole, direct) {
        return direct.rows(packing.table, &packing.sql_direct(), each);
    }
    let backend = Backend::of_conn(conn);
    let sql = if whole {
        match bounds(conn, packing).await? {
            Some((low, high)) => packing.sql_ranges(backend, low, high),
            None => return Ok(()),
        }
    } else {
        packing.sql_one(backend)
    };
    let mut chunks = query(&sql).fetch(&mut *conn);
    while let Some(row) = chunks.try_next().await.map_err(PackedError::from)? {
        let text: Option<String> = sqlx::Row::try_get(&row, 0).map_err(PackedError::from)?;
        // Rows are separated by newlines; JSON text never holds one unescaped.
        for line in text.iter().flat_map(|text| text.split('\n')) {
            let table = packing.table;
            each(Row(Source::Packed { table, text: line }))?;
        }
    }
    Ok(())
}

/// The smallest and largest key of `packing`'s rows, if it has any.
async fn bounds(conn: &mut Conn, packing: &Packing<'_>) -> Result<Option<(i64, i64)>, PackedError> {
    // Two statements in one: the databases answer a lone MIN or MAX of an indexed key from
    // the index's end, where MIN and MAX together scan the table (0.14 s at a million cards).
    let sql = format!(
        "SELECT (SELECT MIN({key}) {from}), (SELECT MAX({key}) {from})",
        key = packing.key,
        from = packing.from
    );
    let (low, high): (Option<i64>, Option<i64>) =
        sqlx::query_as(&sql).fetch_one(&mut *conn).await?;
    Ok(low.zip(high))
}

/// How many rows a whole read of `packing` takes at most (the span of its keys, capped at
/// [`RESERVE_MAX`]): what to reserve in the maps the rows go to, so they are not rehashed as
/// they grow.
///
/// # Errors
/// The database's error.
pub async fn rows_at_most(conn: &mut Conn, packing: &Packing<'_>) -> Result<usize, PackedError> {
    let span = match bounds(conn, packing).await? {
        Some((low, high)) => high.saturating_sub(low).saturating_add(1),
        None => 0,
    };
    Ok(usize::try_from(span).unwrap_or(0).min(RESERVE_MAX))
}

/// Most rows [`rows_at_most`] answers: a sparse key range must not reserve gigabytes.
pub const RESERVE_MAX: usize = 4_000_000;

/// The expression that makes a JSON array of `columns` (SQL expressions, comma-separated) on
/// `backend`: a packed row, or an array inside one (read as a Rust array).
pub fn array(backend: Backend, columns: &str) -> String {
    match backend {
        Backend::Sqlite => format!("json_array({columns})"),
        Backend::Postgres => format!("json_build_array({columns})"),
    }
}

/// The expression that packs the blob `column` as hexadecimal on `backend`.
pub fn hex(backend: Backend, column: &str) -> String {
    match backend {
        Backend::Sqlite => format!("hex({column})"),
        Backend::Postgres => format!("encode({column}, 'hex')"),
    }
}

/// The bytes of a packed blob (hexadecimal, either case), or `None` if it is not `N` bytes
/// of hexadecimal.
pub fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != N * 2 {
        return None;
    }
    let mut out = [0_u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let [high, low] = pair else { return None };
        *byte = nibble(*high)? << 4 | nibble(*low)?;
    }
    Some(out)
}

/// The bytes of a packed blob of any length.
pub fn unhex_vec(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if digits.len() % 2 != 0 {
        return None;
    }
    digits
        .chunks_exact(2)
        .map(|pair| match pair {
            [high, low] => Some(nibble(*high)? << 4 | nibble(*low)?),
            _ => None,
        })
        .collect()
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::borrow::Cow;

    #[derive(Debug, PartialEq, Deserialize)]
    struct Sample<'a>(i64, #[serde(borrow)] Cow<'a, str>, Option<i64>);

    fn packed(text: &str) -> Row<'_> {
        Row(Source::Packed { table: "t", text })
    }

    #[test]
    fn packed_rows_parse_and_borrow_plain_text() {
        let row = packed("[1,\"a\",null]");
        let parsed: Sample = row.parse().unwrap();
        assert_eq!(parsed, Sample(1, Cow::Borrowed("a"), None));
        assert!(matches!(parsed.1, Cow::Borrowed("a")));
        let parsed: Sample = packed("[2,\"b\\\"c\",7]").parse().unwrap();
        assert_eq!(parsed, Sample(2, Cow::Owned("b\"c".to_owned()), Some(7)));
        let bad: Result<(i64, i64), _> = packed("[1,\"x\"]").parse();
        assert!(matches!(bad, Err(PackedError::Row { table: "t", .. })));
    }

    #[test]
    fn hex_reads_back_in_either_case() {
        assert_eq!(unhex::<2>("0aFf"), Some([0x0a, 0xff]));
        assert_eq!(unhex::<2>("0aF"), None);
        assert_eq!(unhex::<1>("zz"), None);
        assert_eq!(unhex_vec("00A1"), Some(vec![0, 0xa1]));
        assert_eq!(unhex_vec(""), Some(vec![]));
        assert_eq!(unhex_vec("abc"), None);
    }

    #[test]
    fn statements_pack_in_key_order_on_both_backends() {
        let packing = Packing {
            table: "cards",
            columns: &["c.id", "c.code"],
            from: "FROM cards c WHERE 1 = 1",
            key: "c.id",
            ordered: true,
        };
        assert_eq!(
            Packing {
                ordered: false,
                ..packing
            }
            .sql_one(Backend::Sqlite),
            "SELECT group_concat(json_array(c.id, c.code), char(10)) FROM cards c WHERE 1 = 1"
        );
        assert_eq!(
            packing.sql_one(Backend::Sqlite),
            "SELECT group_concat(json_array(c.id, c.code), char(10) ORDER BY c.id) \
             FROM cards c WHERE 1 = 1"
        );
        assert_eq!(
            packing.sql_ranges(Backend::Postgres, 3, 50_000),
            "WITH RECURSIVE ranges(low) AS (SELECT 3::bigint UNION ALL \
             SELECT low + 20000 FROM ranges WHERE low <= 50000 - 20000) \
             SELECT (SELECT string_agg(json_build_array(c.id, c.code)::text, E'\\n' \
             ORDER BY c.id) FROM cards c WHERE 1 = 1 AND c.id >= ranges.low \
             AND c.id < ranges.low + 20000) FROM ranges"
        );
    }
}
