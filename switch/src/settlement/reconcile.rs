//! Reconciliation (docs/design.md section 7): proves that a cycle's stored totals equal the sum of
//! its lines, that each line equals the sum of its merchant's transactions, adjustments and
//! carried receivable, and that the club and store-credit ledgers moved by exactly what the
//! cycle claims. Every equality is printed with both sides.

use std::fmt;

use sqlx::Row;

use crate::store::{Conn, Pool};

use crate::settlement::cycle::{Amounts, AMOUNT_COLUMNS};
use crate::settlement::error::SettleError;
use crate::settlement::store::{self, CycleRecord, CycleRef};

/// The transaction columns, the first eight of [`AMOUNT_COLUMNS`].
const TXN_COLUMNS: usize = 8;

/// One equality: a name, and both sides with what they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What is compared.
    pub name: String,
    /// The left side's origin.
    pub left_label: &'static str,
    /// The left side.
    pub left: i64,
    /// The right side's origin.
    pub right_label: &'static str,
    /// The right side.
    pub right: i64,
}

impl Check {
    /// Whether both sides are equal.
    pub fn holds(&self) -> bool {
        self.left == self.right
    }
}

/// The result of reconciling one cycle.
#[derive(Debug, Clone)]
pub struct Reconciliation {
    /// The cycle's id.
    pub cycle_id: i64,
    /// Its business date.
    pub business_date: String,
    /// Every equality checked, in print order.
    pub checks: Vec<Check>,
}

impl Reconciliation {
    /// Whether every equality holds.
    pub fn is_balanced(&self) -> bool {
        self.checks.iter().all(Check::holds)
    }

    /// The equalities that fail.
    pub fn differences(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|check| !check.holds())
    }
}

impl fmt::Display for Reconciliation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "cycle {} ({})", self.cycle_id, self.business_date)?;
        for check in &self.checks {
            let (mark, sign) = if check.holds() {
                ("ok  ", "=")
            } else {
                ("DIFF", "≠")
            };
            writeln!(
                f,
                "{mark} {}: {} {} {sign} {} {}",
                check.name, check.left_label, check.left, check.right_label, check.right
            )?;
        }
        let failed = self.differences().count();
        if failed == 0 {
            writeln!(f, "balanced: {} checks hold", self.checks.len())
        } else {
            writeln!(
                f,
                "NOT BALANCED: {failed} of {} checks fail",
                self.checks.len()
            )
        }
    }
}

/// Reconciles the cycle `cycle`.
///
/// # Errors
/// [`SettleError::UnknownCycle`]; [`SettleError`] on a database failure. A difference is not
/// an error: it is a failing [`Check`].
pub async fn reconcile(pool: &Pool, cycle: &CycleRef) -> Result<Reconciliation, SettleError> {
    let record = store::load_cycle(pool, cycle).await?;
    let mut conn = pool.acquire().await?;
    let mut checks = Checks::default();
    totals_against_lines(&record, &mut checks)?;
    lines_against_sources(&mut conn, &record, &mut checks).await?;
    payout_rule(&record.totals, &mut checks);
    cycle_ledgers(&mut conn, &record, &mut checks).await?;
    club_all_time(&mut conn, &mut checks).await?;
    Ok(Reconciliation {
        cycle_id: record.id,
        business_date: record.business_date.to_string(),
        checks: checks.0,
    })
}

/// The equalities checked so far, in print order.
#[derive(Default)]
struct Checks(Vec<Check>);

impl Checks {
    fn add(
        &mut self,
        name: String,
        left_label: &'static str,
        left: i64,
        right_label: &'static str,
        right: i64,
    ) {
        self.0.push(Check {
            name,
            left_label,
            left,
            right_label,
            right,
        });
    }
}

/// The cycle's totals against the sum of its lines, column by column.
fn totals_against_lines(record: &CycleRecord, checks: &mut Checks) -> Result<(), SettleError> {
    // Totals against lines.
    let mut summed = Amounts::default();
    for line in &record.lines {
        summed = summed.checked_add(&line.amounts)?;
    }
    for ((name, total), sum) in AMOUNT_COLUMNS
        .into_iter()
        .zip(record.totals.columns())
        .zip(summed.columns())
    {
        checks.add(name.to_owned(), "cycle total", total, "sum of lines", sum);
    }
    Ok(())
}

/// The lines against the transactions, adjustments and receivables they come from: the
/// totals column by column, each line, and each merchant with sources but no line.
async fn lines_against_sources(
    conn: &mut Conn,
    record: &CycleRecord,
    checks: &mut Checks,
) -> Result<(), SettleError> {
    let id = record.id;
    // Lines against transactions, adjustments and receivables.
    let rows = sqlx::query(&format!(
        "{} WHERE t.cycle_id = $1 GROUP BY t.merchant_id",
        store::TXN_SUMS
    ))
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let mut expected = store::txn_sums(&rows)?;
    for (merchant, amount) in store::adjustment_sums(conn, id).await? {
        expected.entry(merchant).or_default().adjustments = amount;
    }
    for (merchant, amount) in store::receivables(conn, Some(id)).await? {
        expected.entry(merchant).or_default().carried_in = amount;
    }
    let mut from_sources = Amounts::default();
    for amounts in expected.values() {
        from_sources = from_sources.checked_add(amounts)?;
    }
    for (index, name) in AMOUNT_COLUMNS.into_iter().enumerate().take(TXN_COLUMNS + 2) {
        let total = record.totals.columns().get(index).copied().unwrap_or(0);
        let source = from_sources.columns().get(index).copied().unwrap_or(0);
        let label = match index {
            TXN_COLUMNS => "sum of adjustments",
            9 => "sum of receivables brought in",
            _ => "sum of transactions",
        };
        checks.add(name.to_owned(), "cycle total", total, label, source);
    }
    let mut lines_matching = 0_i64;
    for line in &record.lines {
        let want = expected.remove(&line.merchant_id).unwrap_or_default();
        let got = line.amounts.columns();
        let want = want.columns();
        let mut same = true;
        for index in 0..TXN_COLUMNS + 2 {
            let (left, right) = (got.get(index), want.get(index));
            if left != right {
                same = false;
                let name = AMOUNT_COLUMNS.get(index).copied().unwrap_or("?");
                let left = left.copied().unwrap_or(0);
                let right = right.copied().unwrap_or(0);
                checks.add(
                    format!("{} {name}", line.merchant_code),
                    "line",
                    left,
                    "sources",
                    right,
                );
            }
        }
        let net = line.amounts.net();
        let paid = line.amounts.payout.checked_add(line.amounts.carried_out);
        if net != paid || net.is_none() {
            same = false;
            let name = format!("{} payout + carried_out", line.merchant_code);
            checks.add(
                name,
                "line",
                paid.unwrap_or(0),
                "club − fee + adjustments + carried_in",
                net.unwrap_or(0),
            );
        }
        lines_matching += i64::from(same);
    }
    for merchant in expected.keys() {
        checks.add(
            format!("merchant row {merchant} has no line"),
            "lines",
            0,
            "sources",
            1,
        );
    }
    let lines = i64::try_from(record.lines.len()).unwrap_or(i64::MAX);
    checks.add(
        "merchant lines matching their sources".to_owned(),
        "matching",
        lines_matching,
        "lines",
        lines,
    );
    Ok(())
}

/// The payout rule over the cycle's totals.
fn payout_rule(totals: &Amounts, checks: &mut Checks) {
    // The payout rule over the totals.
    checks.add(
        "payout rule".to_owned(),
        "payout + carried_out",
        totals.payout.checked_add(totals.carried_out).unwrap_or(0),
        "club − fee + adjustments + carried_in",
        totals.net().unwrap_or(0),
    );
}

/// The cycle's club captures, store-credit redemptions and cashback against the movements of
/// its transactions.
async fn cycle_ledgers(
    conn: &mut Conn,
    record: &CycleRecord,
    checks: &mut Checks,
) -> Result<(), SettleError> {
    let totals = &record.totals;
    // The ledgers.
    let ledger = sqlx::query(
        "SELECT \
         coalesce(CAST(sum(CASE WHEN m.account = 'club' AND m.kind = 'capture' \
                      THEN -m.delta_rials ELSE 0 END) AS BIGINT), 0) AS club, \
         coalesce(CAST(sum(CASE WHEN m.account = 'store_credit' AND m.kind = 'capture' \
                      THEN -m.delta_rials ELSE 0 END) AS BIGINT), 0) AS store_credit, \
         coalesce(CAST(sum(CASE WHEN m.account = 'store_credit' AND m.kind = 'cashback' \
                      THEN m.delta_rials ELSE 0 END) AS BIGINT), 0) AS cashback \
         FROM transactions t JOIN balance_movements m ON m.txn_id = t.id \
         WHERE t.cycle_id = $1",
    )
    .bind(record.id)
    .fetch_one(&mut *conn)
    .await?;
    use sqlx::Row;
    checks.add(
        "club captured".to_owned(),
        "cycle total",
        totals.club,
        "−Σ club capture movements",
        ledger.try_get("club")?,
    );
    checks.add(
        "store credit redeemed".to_owned(),
        "cycle total",
        totals.store_credit,
        "−Σ store-credit capture movements",
        ledger.try_get("store_credit")?,
    );
    checks.add(
        "cashback issued".to_owned(),
        "cycle total",
        totals.cashback,
        "Σ cashback movements",
        ledger.try_get("cashback")?,
    );
    Ok(())
}

/// The club account over all time, with top-ups as money in.
async fn club_all_time(conn: &mut Conn, checks: &mut Checks) -> Result<(), SettleError> {
    // The club account over all time, with top-ups as money in: every club balance is the sum
    // of its movements (opening balances, top-ups, captures, returns, replacements), and the
    // top-ups paid online are the orders paid, the callbacks accepted and the credits made, to
    // the rial. One statement, so one snapshot while the switch keeps writing.
    let club = sqlx::query(
        "SELECT \
         (SELECT coalesce(CAST(sum(ledger_rials) AS BIGINT), 0) FROM club_balances) AS ledgers, \
         (SELECT coalesce(CAST(sum(delta_rials) AS BIGINT), 0) FROM balance_movements \
          WHERE account = 'club') AS movements, \
         (SELECT count(*) FROM club_balances b WHERE b.ledger_rials <> coalesce((SELECT \
          sum(m.delta_rials) FROM balance_movements m WHERE m.card_id = b.card_id \
          AND m.account = 'club'), 0)) AS cards_off, \
         (SELECT coalesce(CAST(sum(amount_rials) AS BIGINT), 0) FROM top_up_orders \
          WHERE state = 'paid') AS orders_paid, \
         (SELECT coalesce(CAST(sum(amount_rials) AS BIGINT), 0) FROM top_up_callbacks \
          WHERE outcome = 'accepted') AS callbacks_accepted, \
         (SELECT coalesce(CAST(sum(amount_rials) AS BIGINT), 0) FROM balance_credits \
          WHERE merchant_id IS NULL AND idempotency_key LIKE 'top-up:%') AS credited",
    )
    .fetch_one(&mut *conn)
    .await?;
    checks.add(
        "club ledgers (all time)".to_owned(),
        "Σ club balances",
        club.try_get("ledgers")?,
        "Σ club movements",
        club.try_get("movements")?,
    );
    checks.add(
        "cards whose club balance is not its movements".to_owned(),
        "cards",
        club.try_get("cards_off")?,
        "expected",
        0,
    );
    let orders_paid: i64 = club.try_get("orders_paid")?;
    checks.add(
        "online top-ups (money in): callbacks".to_owned(),
        "Σ paid orders",
        orders_paid,
        "Σ accepted callbacks",
        club.try_get("callbacks_accepted")?,
    );
    checks.add(
        "online top-ups (money in): credits".to_owned(),
        "Σ paid orders",
        orders_paid,
        "Σ top-up credits",
        club.try_get("credited")?,
    );
    Ok(())
}
