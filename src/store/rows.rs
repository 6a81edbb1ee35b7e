//! The text of multi-row statements: their placeholders, and the few sizes they are written in.
//!
//! SQLite keeps 100 compiled statements per connection, and sqlx's `Any` driver cannot raise that.
//! With one text per row count (1 to 100 rows, for each of fifteen statements) nearly every
//! statement of a group missed that cache and was compiled again: 15 % of the writer thread's
//! time under load. Rows are therefore padded to the next of 1, 4, 16 and 64, which gives each
//! statement four texts: padding that repeats a row where twice means the same as once (`IN`
//! lists, conditions joined by `OR`, updates from a list of values), and rows of NULLs that the
//! statement drops for inserts.

use sqlx::Any;
use sqlx::any::AnyArguments;
use sqlx::query::Query;

/// Rows per statement at most: far below SQLite's and PostgreSQL's limits on bound values.
pub(super) const CHUNK: usize = 64;

/// The rows a statement of `n` rows is written with: past [`CHUNK`] (the `IN` lists of claims,
/// which are not split), a multiple of it.
pub(super) fn padded(n: usize) -> usize {
    match n {
        0..=1 => 1,
        2..=4 => 4,
        5..=16 => 16,
        _ => n.div_ceil(CHUNK) * CHUNK,
    }
}

/// `($1, $2), ($3, $4)`: placeholders for `rows` rows of `cols` values, numbered from `$first`
/// (one row is an `IN (…)` list).
pub(super) fn values(rows: usize, cols: usize, first: usize) -> String {
    let mut s = String::new();
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push_str(", ");
            }
            s.push('$');
            s.push_str(&(first + r * cols + c).to_string());
        }
        s.push(')');
    }
    s
}

/// `chunk`, then its last row again up to [`padded`]: the rows of a statement in which a row
/// twice means the same as once.
pub(super) fn repeat_last<T>(chunk: &[T]) -> impl Iterator<Item = &T> {
    let pad = padded(chunk.len()) - chunk.len();
    chunk.iter().chain(
        chunk
            .last()
            .into_iter()
            .flat_map(move |l| std::iter::repeat_n(l, pad)),
    )
}

/// The type of a column, for the NULLs that pad an insert (PostgreSQL types every parameter).
#[derive(Clone, Copy)]
pub(super) enum Col {
    Text,
    Int,
    Int32,
}

/// `SELECT * FROM (VALUES …) AS v WHERE columnK IS NOT NULL`: the rows of an insert of `rows`
/// rows of `cols.len()` values, padded with rows of NULLs that the condition drops. Column
/// `key` (from 1) is never NULL in a real row. Both databases name a list's columns `column1`….
pub(super) fn insert_rows(rows: usize, cols: usize, key: usize) -> String {
    format!(
        "SELECT * FROM (VALUES {}) AS v WHERE column{key} IS NOT NULL",
        values(padded(rows), cols, 1)
    )
}

/// Binds the rows of NULLs that pad `real` rows of an [`insert_rows`] statement.
pub(super) fn bind_padding<'q>(
    mut query: Query<'q, Any, AnyArguments>,
    real: usize,
    cols: &[Col],
) -> Query<'q, Any, AnyArguments> {
    for _ in real..padded(real) {
        for c in cols {
            query = match c {
                Col::Text => query.bind(None::<String>),
                Col::Int => query.bind(None::<i64>),
                Col::Int32 => query.bind(None::<i32>),
            };
        }
    }
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_row_by_row() {
        assert_eq!(values(2, 3, 1), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(values(1, 2, 2), "($2, $3)");
    }

    #[test]
    fn every_row_count_is_written_in_one_of_four_sizes() {
        let sizes: std::collections::BTreeSet<usize> = (1..=CHUNK).map(padded).collect();
        assert_eq!(sizes.into_iter().collect::<Vec<_>>(), [1, 4, 16, 64]);
        assert!((1..=CHUNK).all(|n| padded(n) >= n));
        assert_eq!(padded(CHUNK + 1), 2 * CHUNK);
    }

    #[test]
    fn padding_repeats_the_last_row() {
        let rows = [1, 2, 3, 4, 5];
        let out: Vec<i32> = repeat_last(&rows).copied().collect();
        assert_eq!(out.len(), 16);
        assert_eq!(&out[..5], &rows);
        assert!(out[5..].iter().all(|r| *r == 5));
        assert_eq!(repeat_last::<i32>(&[]).count(), 0);
    }

    #[test]
    fn an_insert_drops_its_padding_rows() {
        assert_eq!(
            insert_rows(3, 2, 2),
            "SELECT * FROM (VALUES ($1, $2), ($3, $4), ($5, $6), ($7, $8)) AS v WHERE column2 IS NOT NULL"
        );
    }
}
