//! A multi-row statement builder with the placeholders each backend wants: `$1`, `$2`, … for
//! PostgreSQL, plain `?` for SQLite. sqlx's own `QueryBuilder` writes `?` for its `Any`
//! driver, which PostgreSQL refuses. SQLite accepts `$N` too, but binding named parameters
//! costs it a scan of every name per parameter: a 500-row statement with 10 000 parameters
//! spent most of the switch's CPU there (measured with `perf`). This is the small part of a
//! query builder the store uses.

use std::fmt::Write as _;

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, Arguments, Encode, Type};

use crate::store::Backend;

/// SQL text and its bound values, built piece by piece.
pub struct QueryBuilder<'a> {
    sql: String,
    arguments: AnyArguments<'a>,
    bound: usize,
}

impl<'a> QueryBuilder<'a> {
    /// Starts a statement with `init`.
    pub fn new(init: impl Into<String>) -> QueryBuilder<'a> {
        QueryBuilder {
            sql: init.into(),
            arguments: AnyArguments::default(),
            bound: 0,
        }
    }

    /// Appends SQL text.
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.sql.push_str(text);
        self
    }

    /// Appends a placeholder and binds `value` to it.
    pub fn push_bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'a + Encode<'a, Any> + Type<Any>,
    {
        self.bound += 1;
        // Writing to a String cannot fail, nor can encoding the integer, text and byte values
        // the store binds (the `Any` driver only copies them into a vector).
        let _ = write!(self.sql, "${}", self.bound);
        let _ = self.arguments.add(value);
        self
    }

    /// Appends `VALUES (…), (…)`: one parenthesised row per item, its columns written by `row`.
    pub fn push_values<I, F>(&mut self, rows: I, mut row: F) -> &mut Self
    where
        I: IntoIterator,
        F: FnMut(Separated<'_, 'a>, I::Item),
    {
        self.sql.push_str("VALUES ");
        for (index, item) in rows.into_iter().enumerate() {
            if index > 0 {
                self.sql.push_str(", ");
            }
            self.sql.push('(');
            row(
                Separated {
                    builder: self,
                    first: true,
                },
                item,
            );
            self.sql.push(')');
        }
        self
    }

    /// The statement for `backend`, ready to run.
    pub fn build(&mut self, backend: Backend) -> Query<'_, Any, AnyArguments<'_>> {
        if backend == Backend::Sqlite {
            self.sql = positional(&self.sql);
        }
        sqlx::query_with(&self.sql, std::mem::take(&mut self.arguments))
    }

    /// The SQL text so far.
    pub fn sql(&self) -> &str {
        &self.sql
    }
}

/// `sql` with every `$N` placeholder written as `?` (they are numbered in order, so the
/// positions agree). The builder's own text never holds a `$` otherwise.
fn positional(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// The columns of one `VALUES` row, separated by commas.
pub struct Separated<'b, 'a> {
    builder: &'b mut QueryBuilder<'a>,
    first: bool,
}

impl<'a> Separated<'_, 'a> {
    /// Appends a placeholder for the next column and binds `value` to it.
    pub fn push_bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'a + Encode<'a, Any> + Type<Any>,
    {
        if !self.first {
            self.builder.sql.push_str(", ");
        }
        self.first = false;
        self.builder.push_bind(value);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_placeholders_across_rows() {
        let mut query = QueryBuilder::new("INSERT INTO t (a, b) ");
        query.push_values([(1_i64, "x"), (2, "y")], |mut row, (a, b)| {
            row.push_bind(a).push_bind(b);
        });
        query.push(" ON CONFLICT DO NOTHING");
        assert_eq!(
            query.sql(),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            positional(query.sql()),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?) ON CONFLICT DO NOTHING"
        );
        assert_eq!(positional("a = $10 AND b = $2x"), "a = ? AND b = ?x");
    }
}
