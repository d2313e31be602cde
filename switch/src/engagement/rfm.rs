//! The RFM rule (recency, frequency, monetary value), shared by the RFM report
//! (`api::reports::rfm`), segments (`{"rfm": {"r_min", "f_min", "m_min"}}`, docs/campaigns.md,
//! evaluated by `audience`) and the coupons API's scores: one definition of who scores what.

/// How far back the RFM rule looks: the rolling twelve months of the loyalty programme.
pub const WINDOW_DAYS: i64 = 365;

/// Every member with a confirmed purchase since `$1`, scored: `member_id`, `member`, `card_id`
/// (their lowest card with such a purchase), `last_ms`, `frequency`, `monetary_rials`, and
/// `r`, `f`, `m` as ⌈5 k / n⌉ (docs/operator-api.md). A caller adds `ORDER BY`/`WHERE`.
pub const SCORED: &str = "WITH per AS (SELECT mb.id AS member_id, mb.code AS member, \
     MIN(c.id) AS card_id, MAX(t.confirmed_at_ms) AS last_ms, \
     COUNT(*) AS frequency, CAST(SUM(t.gross_rials) AS BIGINT) AS monetary_rials \
     FROM transactions t JOIN cards c ON c.id = t.card_id \
     JOIN members mb ON mb.id = c.member_id \
     WHERE t.state = 'confirmed' AND t.confirmed_at_ms >= $1 GROUP BY mb.id, mb.code) \
     SELECT * FROM (SELECT member_id, member, card_id, last_ms, frequency, monetary_rials, \
     (5 * COUNT(*) OVER (ORDER BY last_ms) + COUNT(*) OVER () - 1) / COUNT(*) OVER () AS r, \
     (5 * COUNT(*) OVER (ORDER BY frequency) + COUNT(*) OVER () - 1) / COUNT(*) OVER () AS f, \
     (5 * COUNT(*) OVER (ORDER BY monetary_rials) + COUNT(*) OVER () - 1) / COUNT(*) OVER () \
     AS m FROM per) scored";
