//! `lsw-sim check`: the conservation invariants on a database after any run. Each check is a
//! query that returns the rows breaking it; a clean database returns none.

use sqlx::Row;
use switch::store::Pool;

/// One invariant and the query that lists its breaches.
struct Invariant {
    name: &'static str,
    breaches: &'static str,
}

const INVARIANTS: &[Invariant] = &[
    Invariant {
        name: "club: movements sum to the ledger (opening - captured + returned + issued = closing)",
        breaches: "SELECT b.card_id AS subject FROM club_balances b \
                   LEFT JOIN (SELECT card_id, CAST(SUM(delta_rials) AS BIGINT) AS total FROM balance_movements \
                              WHERE account = 'club' GROUP BY card_id) m ON m.card_id = b.card_id \
                   WHERE COALESCE(m.total, 0) <> b.ledger_rials",
    },
    Invariant {
        name: "store credit: movements sum to the ledger per (card, merchant)",
        breaches: "SELECT a.card_id || '/' || a.merchant_id AS subject FROM store_credit_accounts a \
                   LEFT JOIN (SELECT card_id, merchant_id, CAST(SUM(delta_rials) AS BIGINT) AS total FROM balance_movements \
                              WHERE account = 'store_credit' GROUP BY card_id, merchant_id) m \
                     ON m.card_id = a.card_id AND m.merchant_id = a.merchant_id \
                   WHERE COALESCE(m.total, 0) <> a.ledger_rials",
    },
    Invariant {
        name: "store credit: lots sum to the ledger per (card, merchant)",
        breaches: "SELECT a.card_id || '/' || a.merchant_id AS subject FROM store_credit_accounts a \
                   LEFT JOIN (SELECT card_id, merchant_id, CAST(SUM(remaining_rials) AS BIGINT) AS total FROM store_credit_lots \
                              GROUP BY card_id, merchant_id) l ON l.card_id = a.card_id AND l.merchant_id = a.merchant_id \
                   WHERE COALESCE(l.total, 0) <> a.ledger_rials",
    },
    Invariant {
        name: "club holds are exactly the pending transactions' club amounts",
        breaches: "SELECT b.card_id AS subject FROM club_balances b \
                   LEFT JOIN (SELECT card_id, CAST(SUM(club_rials) AS BIGINT) AS total FROM transactions \
                              WHERE state = 'pending' GROUP BY card_id) p ON p.card_id = b.card_id \
                   WHERE COALESCE(p.total, 0) <> b.held_rials",
    },
    Invariant {
        name: "store-credit holds are exactly the pending transactions' store-credit amounts",
        breaches: "SELECT a.card_id || '/' || a.merchant_id AS subject FROM store_credit_accounts a \
                   LEFT JOIN (SELECT card_id, merchant_id, CAST(SUM(store_credit_rials) AS BIGINT) AS total FROM transactions \
                              WHERE state = 'pending' GROUP BY card_id, merchant_id) p \
                     ON p.card_id = a.card_id AND p.merchant_id = a.merchant_id \
                   WHERE COALESCE(p.total, 0) <> a.held_rials",
    },
    Invariant {
        name: "every confirmed transaction has exactly one capture",
        breaches: "SELECT t.id AS subject FROM transactions t LEFT JOIN captures c ON c.txn_id = t.id \
                   WHERE t.state = 'confirmed' AND c.txn_id IS NULL",
    },
    Invariant {
        name: "captures belong to confirmed transactions, or to reversed ones whose capture was returned",
        breaches: "SELECT c.txn_id AS subject FROM captures c JOIN transactions t ON t.id = c.txn_id \
                   WHERE NOT (t.state = 'confirmed' OR (t.state = 'reversed' AND c.returned_at_ms IS NOT NULL))",
    },
    Invariant {
        name: "a capture never takes more than its transaction held",
        breaches: "SELECT c.txn_id AS subject FROM captures c JOIN transactions t ON t.id = c.txn_id \
                   WHERE c.club_rials > t.club_rials OR c.store_credit_rials > t.store_credit_rials",
    },
    Invariant {
        name: "G = discount + store credit + club + bank rest on every row",
        breaches: "SELECT id AS subject FROM transactions \
                   WHERE gross_rials <> discount_rials + store_credit_rials + club_rials + bank_rest_rials",
    },
    Invariant {
        name: "no balance, hold or lot below zero, no hold above its ledger",
        breaches: "SELECT 'club ' || card_id AS subject FROM club_balances \
                     WHERE ledger_rials < 0 OR held_rials < 0 OR held_rials > ledger_rials \
                   UNION ALL SELECT 'store ' || card_id || '/' || merchant_id FROM store_credit_accounts \
                     WHERE ledger_rials < 0 OR held_rials < 0 OR held_rials > ledger_rials \
                   UNION ALL SELECT 'lot ' || id FROM store_credit_lots WHERE remaining_rials < 0",
    },
];

/// The outcome of one invariant.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The invariant.
    pub name: &'static str,
    /// The first rows that break it (at most 10).
    pub breaches: Vec<String>,
    /// How many rows break it.
    pub count: usize,
}

/// Runs every invariant, all in one statement (the simulator runs them after every commit, and
/// a statement is a round trip to the database): each invariant's breaches are tagged with its
/// index.
///
/// # Errors
/// A database error.
pub async fn run(pool: &Pool) -> Result<Vec<Finding>, sqlx::Error> {
    let mut findings: Vec<Finding> = INVARIANTS
        .iter()
        .map(|invariant| Finding {
            name: invariant.name,
            breaches: Vec::new(),
            count: 0,
        })
        .collect();
    let rows = sqlx::query(&all_breaches()).fetch_all(pool).await?;
    for row in rows {
        let index: i64 = row.try_get("invariant")?;
        let finding = usize::try_from(index)
            .ok()
            .and_then(|index| findings.get_mut(index))
            .ok_or_else(|| sqlx::Error::Protocol(format!("no invariant {index}")))?;
        finding.count += 1;
        if finding.breaches.len() < 10 {
            finding.breaches.push(row.try_get("subject")?);
        }
    }
    Ok(findings)
}

/// Every invariant's breaches, in one `UNION ALL`: the invariant's index and the subject as
/// text (some queries name rows by id, some by a composed text).
fn all_breaches() -> String {
    INVARIANTS
        .iter()
        .enumerate()
        .map(|(index, invariant)| {
            format!(
                "SELECT CAST({index} AS BIGINT) AS invariant, CAST(subject AS TEXT) AS subject \
                 FROM ({}) breaches_{index}",
                invariant.breaches
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// Whether every invariant holds.
pub fn all_hold(findings: &[Finding]) -> bool {
    findings.iter().all(|finding| finding.count == 0)
}
