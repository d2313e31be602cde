//! Packed reads (`store::packed`, start-up at a million cards) take every row once, in key
//! order, across many chunks and the empty key ranges between them, with text that needs
//! escaping and blobs, on SQLite and on PostgreSQL; on a SQLite file, a direct read
//! (`store::direct`) gives the same rows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::borrow::Cow;

use serde::Deserialize;
use switch::store::direct::Direct;
use switch::store::packed::{self, Packing, CHUNK_KEYS};
use switch::store::{self, Backend, Pool};

#[derive(Debug, Deserialize)]
struct Row<'a>(
    i64,
    #[serde(borrow)] Cow<'a, str>,
    Option<i64>,
    #[serde(borrow)] Cow<'a, str>,
);

/// Keys: a run of 2.5 chunks, a gap of three empty chunks, then a few more; the text of
/// every 1,000th row needs escaping.
fn keys() -> Vec<i64> {
    let run = CHUNK_KEYS * 5 / 2;
    (1..=run)
        .chain(run + 3 * CHUNK_KEYS..run + 3 * CHUNK_KEYS + 10)
        .collect()
}

fn text_of(key: i64) -> String {
    if key % 1000 == 0 {
        format!("quote \" backslash \\ newline \n tab \t {key} ش")
    } else {
        format!("T-{key}")
    }
}

async fn fill(pool: &Pool) {
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query(
        "CREATE TABLE packed_test (id BIGINT PRIMARY KEY, label TEXT NOT NULL, \
         maybe BIGINT, data BYTEA NOT NULL)"
            .replace(
                "BYTEA",
                if Backend::of_conn(&conn) == Backend::Sqlite {
                    "BLOB"
                } else {
                    "BYTEA"
                },
            )
            .as_str(),
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    let keys = keys();
    for batch in keys.chunks(500) {
        let mut insert = store::sql::QueryBuilder::new("INSERT INTO packed_test ");
        insert.push_values(batch, |mut row, key| {
            row.push_bind(*key)
                .push_bind(text_of(*key))
                .push_bind((key % 3 == 0).then_some(*key * 7))
                .push_bind(key.to_be_bytes().to_vec());
        });
        insert
            .build(Backend::of_conn(&conn))
            .execute(&mut *conn)
            .await
            .unwrap();
    }
}

async fn check(pool: &Pool) {
    fill(pool).await;
    let mut conn = pool.acquire().await.unwrap();
    let direct = Direct::open(&mut conn).await.unwrap();
    assert_eq!(
        direct.is_some(),
        Backend::of_conn(&conn) == Backend::Sqlite,
        "a SQLite file is read directly, PostgreSQL packed"
    );
    let data = packed::hex(Backend::of_conn(&conn), "data");
    let packing = Packing {
        table: "packed_test",
        columns: &["id", "label", "maybe", &data],
        from: "FROM packed_test WHERE 1 = 1",
        key: "id",
        ordered: true,
    };
    for direct in [None, direct.as_ref()] {
        let mut seen = Vec::new();
        packed::read(&mut conn, &packing, true, direct, sqlx::query, |row| {
            let Row(id, label, maybe, data) = row.parse()?;
            assert_eq!(label, text_of(id));
            assert_eq!(maybe, (id % 3 == 0).then_some(id * 7));
            assert_eq!(packed::unhex::<8>(&data), Some(id.to_be_bytes()));
            seen.push(id);
            Ok::<(), packed::PackedError>(())
        })
        .await
        .unwrap();
        assert_eq!(seen, keys(), "every row once, in key order");
    }
    let at_most = packed::rows_at_most(&mut conn, &packing).await.unwrap();
    assert!(at_most >= keys().len());

    // Unordered, for a map: the same rows, each once.
    let unordered = Packing {
        ordered: false,
        ..packing
    };
    for direct in [None, direct.as_ref()] {
        let mut any_order = Vec::new();
        packed::read(&mut conn, &unordered, true, direct, sqlx::query, |row| {
            any_order.push(row.parse::<Row<'_>>()?.0);
            Ok::<(), packed::PackedError>(())
        })
        .await
        .unwrap();
        any_order.sort_unstable();
        assert_eq!(any_order, keys());
    }

    // A narrower condition, in one statement (packed, even beside a direct connection).
    let packing = Packing {
        from: "FROM packed_test WHERE id > 49990",
        ..packing
    };
    let mut narrow = Vec::new();
    packed::read(
        &mut conn,
        &packing,
        false,
        direct.as_ref(),
        sqlx::query,
        |row| {
            narrow.push(row.parse::<Row<'_>>()?.0);
            Ok::<(), packed::PackedError>(())
        },
    )
    .await
    .unwrap();
    let wanted: Vec<i64> = keys().into_iter().filter(|key| *key > 49990).collect();
    assert_eq!(narrow, wanted);

    // A row that does not fit the row type is an error naming the table, not a panic, read
    // either way.
    for (whole, direct) in [(false, None), (true, direct.as_ref())] {
        let bad = packed::read(&mut conn, &packing, whole, direct, sqlx::query, |row| {
            row.parse::<(i64, i64)>().map(drop)
        })
        .await;
        let error = bad.unwrap_err().to_string();
        assert!(error.starts_with("packed_test: "), "{error}");
    }
}

// Multi-threaded: a direct read runs in `block_in_place`, as at start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packed_reads_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let pool = store::open(&common::sqlite_url(&dir.path().join("packed.db")))
        .await
        .unwrap();
    check(&pool).await;
}

#[tokio::test]
async fn packed_reads_on_postgres() {
    let Some(server) = common::database_url() else {
        return;
    };
    let url = store::create_database(&server, "lsw_packed").await.unwrap();
    let pool = store::open(&url).await.unwrap();
    check(&pool).await;
}
