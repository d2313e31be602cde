//! Goal: money never clamps silently. An operation the balances cannot make as recorded (a
//! release of more than is held, a ledger past the largest amount) is answered `96` with the
//! fault for the log, and changes nothing; a stored money value that is not an amount is an
//! error naming its table, column and row, never zero.
//!
//! Method: the test network on a temporary SQLite file, requests built by its terminal and
//! decided by the real admission and engine, each decision's effects written by the ledger as
//! the committer writes them; the state or a row is then put where the case needs it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use protocol::terminal::{Outgoing, Terminal};
use protocol::{Ksi, Pan, ProcessingCode, ResponseCode, Rrn, TerminalId, Tmk, WorkingKeys};
use switch::admission::{admit, Admission};
use switch::domain::{CardId, Kek, MerchantId, PanToken, PanTokenKey, Rials, UnixMillis};
use switch::engine::balance::Broken;
use switch::engine::credit::{Credit, CreditOutcome};
use switch::engine::{BalanceFault, Decision, Engine, EngineConfig, TxnId, TxnState};
use switch::snapshot::Snapshot;
use switch::store::ledger::{self, LedgerError};
use switch::store::{Pool, StoreError};

const NETWORK: &str = include_str!("data/network.json");
/// C-RICH: 2 000 000 rials of club balance, 100 000 of store credit at M-A, silver (2 %
/// cashback at M-A).
const RICH: &str = "6037991111111112";
/// 2026-09-23T08:53:20Z.
const NOW: UnixMillis = UnixMillis::new(1_790_153_600_000);
const ENGINE: EngineConfig = EngineConfig {
    hold_timeout_ms: 120_000,
    answered_window_ms: 86_400_000,
};

struct Net {
    _dir: tempfile::TempDir,
    pool: Pool,
    snapshot: Snapshot,
    engine: Engine,
    pan_key: PanTokenKey,
    /// TRM00001 at M-A.
    terminal: Terminal,
}

/// A purchase the engine approved.
struct Approved {
    out: Outgoing,
    rrn: Rrn,
}

impl Net {
    async fn new() -> Net {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("lsw.db").display());
        let pool = switch::store::open(&url).await.unwrap();
        let kek = Kek::from_bytes([0x11; 32]);
        let pan_key = PanTokenKey::from_bytes([0x22; 32]);
        switch::import::import_text(&pool, NETWORK, &kek, &pan_key, NOW)
            .await
            .unwrap();
        let loaded = switch::store::reference::load(&pool, &kek).await.unwrap();
        let snapshot = Snapshot::build(&loaded).unwrap();
        let state = ledger::load(&pool, NOW).await.unwrap();
        let tmk: Vec<u8> = (0..32).collect();
        Net {
            _dir: dir,
            pool,
            snapshot,
            engine: Engine::new(state, ENGINE),
            pan_key,
            terminal: Terminal::new(
                TerminalId::parse(b"TRM00001").unwrap(),
                Ksi::parse(b"0123456789ABCDEF").unwrap(),
                WorkingKeys::derive(&Tmk::from_slice(&tmk).unwrap()),
            ),
        }
    }

    fn card(&self) -> CardId {
        let pan = Pan::parse(RICH.as_bytes()).unwrap();
        let token = PanToken::compute(&self.pan_key, &pan);
        self.snapshot.card_by_token(&token).unwrap().id
    }

    async fn merchant(&self) -> MerchantId {
        let id: i64 = sqlx::query_scalar("SELECT id FROM merchants WHERE code = 'M-A'")
            .fetch_one(&self.pool)
            .await
            .unwrap();
        MerchantId::new(id)
    }

    /// Admits, decides and makes durable one message.
    async fn send(&mut self, out: &Outgoing) -> Decision {
        let Admission::Admitted(admitted) = admit(out.bytes.clone(), &self.snapshot, &self.pan_key)
        else {
            panic!("not admitted: {:?}", out.mti);
        };
        let keyed = self
            .snapshot
            .keys_by_ksi(admitted.request.ksi.as_bytes())
            .unwrap();
        let mut effects = Vec::new();
        let decision = self
            .engine
            .decide(&self.snapshot, keyed, &admitted, NOW, &mut effects);
        ledger::apply(&self.pool, &effects).await.unwrap();
        decision
    }

    async fn purchase(&mut self, code: ProcessingCode, amount: u64) -> Approved {
        let pan = Pan::parse(RICH.as_bytes()).unwrap();
        let out = self
            .terminal
            .purchase(code, Some(amount), &pan, NOW.get() / 1000, [7; 12])
            .unwrap();
        let decision = self.send(&out).await;
        assert_eq!(decision.code(), ResponseCode::Approved);
        Approved {
            out,
            rrn: decision.rrn().unwrap(),
        }
    }

    async fn confirm(&mut self, original: &Approved) -> Decision {
        let out = self
            .terminal
            .confirm(&original.out, original.rrn, NOW.get() / 1000)
            .unwrap();
        self.send(&out).await
    }

    async fn reverse(&mut self, original: &Approved) -> Decision {
        let out = self
            .terminal
            .reversal(&original.out, Some(original.rrn), NOW.get() / 1000)
            .unwrap();
        self.send(&out).await
    }

    /// Credits the card's club balance (`None`) or store credit at `merchant`, durably.
    async fn credit(&mut self, merchant: Option<MerchantId>, amount: Rials) {
        let credit = Credit {
            key: format!("test:{merchant:?}:{amount}"),
            card: self.card(),
            merchant,
            amount,
            expires_at: None,
            operator: "test".to_owned(),
            detail: "{}".to_owned(),
            top_up: None,
        };
        let mut effects = Vec::new();
        let outcome = self.engine.credit(credit, NOW, &mut effects).unwrap();
        assert_eq!(outcome, CreditOutcome::Applied);
        ledger::apply(&self.pool, &effects).await.unwrap();
    }

    fn txn_state(&self) -> TxnState {
        self.engine.state.txns.get(&self.txn()).unwrap().state
    }

    /// The one transaction of a case.
    fn txn(&self) -> TxnId {
        TxnId(self.engine.state.next_txn - 1)
    }

    async fn execute(&self, sql: &str) {
        sqlx::query(sql).execute(&self.pool).await.unwrap();
    }
}

/// The decision answered `96` for `broken`.
fn refused(decision: &Decision, broken: Broken) -> BalanceFault {
    assert_eq!(decision.code(), ResponseCode::SystemError);
    assert!(!decision.durable);
    let fault = decision
        .fault
        .expect("a 96 of the balances carries its fault");
    assert_eq!(fault.broken, broken);
    fault
}

/// A reversal or confirm of a purchase whose hold the state no longer has: the release was
/// a silent zero (and the reversal answered `00`); now it is `96` with the fault, the
/// transaction stays pending, and the sweeper reports it once instead of releasing nothing.
#[tokio::test]
async fn a_release_of_more_than_is_held_answers_96_and_changes_nothing() {
    let mut net = Net::new().await;
    let card = net.card();
    let purchase = net.purchase(ProcessingCode::ClubPurchase, 10_000).await;
    // 10 000 less the 10 % rule's discount.
    let held = Rials::new(9_000).unwrap();
    let club = net.engine.state.club.get_mut(&card).unwrap();
    assert_eq!(club.held, held);
    // What a bug or an edited database would leave: the hold is no longer counted.
    club.held = Rials::ZERO;
    let ledger_before = club.ledger;

    let fault = refused(&net.reverse(&purchase).await, Broken::ReleaseOverHeld);
    assert_eq!(fault.card, card);
    assert_eq!(fault.merchant, None);
    assert_eq!((fault.balance, fault.amount), (Rials::ZERO, held));
    refused(&net.confirm(&purchase).await, Broken::ReleaseOverHeld);
    assert_eq!(net.txn_state(), TxnState::Pending);
    let club = net.engine.state.club[&card];
    assert_eq!((club.ledger, club.held), (ledger_before, Rials::ZERO));

    let mut effects = Vec::new();
    let later = UnixMillis::new(NOW.get() + ENGINE.hold_timeout_ms + 1);
    let swept = net.engine.sweep(later, &mut effects, 16);
    assert_eq!(swept.released, 0);
    assert_eq!(swept.faults.len(), 1);
    assert_eq!(swept.faults[0].0, net.txn());
    assert_eq!(swept.faults[0].1.broken, Broken::ReleaseOverHeld);
    assert!(effects.is_empty());
    assert_eq!(net.txn_state(), TxnState::Pending);
    let again = net.engine.sweep(later, &mut effects, 16);
    assert!(again.faults.is_empty(), "reported once, not at every sweep");
}

/// A purchase confirmed on the advice path (after its hold expired) counts against its
/// rule's budget, as a reload counts it: its expiry had taken the discount out and the
/// confirm did not put it back, so the reversal's take-out was clamped at zero.
#[tokio::test]
async fn an_advice_confirm_counts_its_discount_against_the_rule_again() {
    let mut net = Net::new().await;
    let purchase = net.purchase(ProcessingCode::BankPurchase, 10_000).await;
    let rule = net.engine.state.txns.get(&net.txn()).unwrap().rule.unwrap();
    let spent = |net: &Net| net.engine.state.rule_spent.get(&rule).copied();
    assert_eq!(spent(&net), Some(1_000), "10 % of 10 000");
    let mut effects = Vec::new();
    let later = UnixMillis::new(NOW.get() + ENGINE.hold_timeout_ms + 1);
    assert_eq!(net.engine.sweep(later, &mut effects, 16).released, 1);
    ledger::apply(&net.pool, &effects).await.unwrap();
    assert_eq!(spent(&net), Some(0));
    assert_eq!(net.confirm(&purchase).await.code(), ResponseCode::Approved);
    assert_eq!(net.txn_state(), TxnState::Confirmed);
    assert_eq!(spent(&net), Some(1_000));
    let reloaded = ledger::load(&net.pool, NOW).await.unwrap();
    assert_eq!(reloaded.rule_spent.get(&rule).copied(), Some(1_000));
    assert_eq!(net.reverse(&purchase).await.code(), ResponseCode::Approved);
    assert_eq!(spent(&net), Some(0));
}

/// A reversal returning club balance to a ledger topped up to the largest amount since the
/// confirm stopped the ledger at the maximum (and answered `00`, the rials gone); now it is
/// `96` and the transaction stays confirmed with its capture.
#[tokio::test]
async fn a_return_past_the_largest_amount_answers_96_not_the_maximum() {
    let mut net = Net::new().await;
    let card = net.card();
    let purchase = net.purchase(ProcessingCode::ClubPurchase, 10_000).await;
    assert_eq!(net.confirm(&purchase).await.code(), ResponseCode::Approved);
    let ledger_now = net.engine.state.club[&card].ledger;
    net.credit(None, Rials::MAX.checked_sub(ledger_now).unwrap())
        .await;
    assert_eq!(net.engine.state.club[&card].ledger, Rials::MAX);

    let fault = refused(&net.reverse(&purchase).await, Broken::OverMax);
    // 10 000 less the 10 % rule's discount.
    assert_eq!(
        (fault.balance, fault.amount),
        (Rials::MAX, Rials::new(9_000).unwrap())
    );
    assert_eq!(net.txn_state(), TxnState::Confirmed);
    assert_eq!(net.engine.state.club[&card].ledger, Rials::MAX);
}

/// A confirm whose cashback lot would take the store credit past the largest amount added
/// the lot with the ledger stopped at the maximum; now it is `96` and nothing is captured.
#[tokio::test]
async fn a_cashback_past_the_largest_amount_answers_96() {
    let mut net = Net::new().await;
    let (card, merchant) = (net.card(), net.merchant().await);
    let ledger_now = net.engine.state.store[&(card, merchant)].ledger;
    net.credit(Some(merchant), Rials::MAX.checked_sub(ledger_now).unwrap())
        .await;
    let purchase = net.purchase(ProcessingCode::BankPurchase, 1_000_000).await;
    let before = net.engine.state.store[&(card, merchant)].clone();

    let fault = refused(&net.confirm(&purchase).await, Broken::OverMax);
    assert_eq!(fault.merchant, Some(merchant));
    assert_eq!(fault.balance, Rials::MAX);
    assert_eq!(net.txn_state(), TxnState::Pending);
    assert_eq!(net.engine.state.store[&(card, merchant)], before);
}

/// A capture's club amount past the largest amount was read as zero; it is a corrupt row.
#[tokio::test]
async fn a_corrupt_captured_club_amount_is_a_named_error_not_zero() {
    let mut net = Net::new().await;
    let purchase = net.purchase(ProcessingCode::ClubPurchase, 10_000).await;
    assert_eq!(net.confirm(&purchase).await.code(), ResponseCode::Approved);
    assert!(ledger::load(&net.pool, NOW).await.is_ok());
    net.execute("UPDATE captures SET club_rials = 1000000000000")
        .await;
    match ledger::load(&net.pool, NOW).await {
        Err(LedgerError::Corrupt { table, field }) => {
            assert_eq!((table, field), ("captures", "club_rials"));
        }
        other => panic!("a corrupt capture loaded: {:?}", other.map(|_| ())),
    }
}

/// The explanation of a transaction read a fee bound past the largest amount as zero; it is
/// an error naming the history row and its column.
#[tokio::test]
async fn an_explanation_over_a_corrupt_amount_names_its_row() {
    let mut net = Net::new().await;
    let purchase = net.purchase(ProcessingCode::BankPurchase, 100_000).await;
    assert_eq!(net.confirm(&purchase).await.code(), ResponseCode::Approved);
    let txn = net.txn().0;
    let explanation = switch::store::explain::explain(&net.pool, txn).await;
    assert!(explanation.unwrap().unwrap().adds_up);
    net.execute("UPDATE merchant_terms_history SET fee_rials_max = 1000000000000")
        .await;
    let row: i64 = sqlx::query_scalar("SELECT MAX(id) FROM merchant_terms_history")
        .fetch_one(&net.pool)
        .await
        .unwrap();
    match switch::store::explain::explain(&net.pool, txn).await {
        Err(StoreError::Corrupt { table, id, reason }) => {
            assert_eq!(table, "merchant_terms_history");
            assert!(id >= 1 && id <= row, "{id}");
            assert!(reason.contains("fee_rials_max"), "{reason}");
        }
        other => panic!("explained over a corrupt row: {:?}", other.map(|_| ())),
    }
}

/// An expiring lot whose remainder is past the largest amount was announced to the member as
/// zero rials; the run fails naming the row, and writes no notice.
#[tokio::test]
async fn an_expiry_notice_of_a_corrupt_lot_names_its_row() {
    let net = Net::new().await;
    net.execute("UPDATE members SET phone = '+989121234567'")
        .await;
    let expiry = NOW.get() + 86_400_000;
    net.execute(&format!(
        "UPDATE store_credit_lots SET remaining_rials = 1000000000000, expires_at_ms = {expiry}"
    ))
    .await;
    let lot: i64 = sqlx::query_scalar("SELECT id FROM store_credit_lots")
        .fetch_one(&net.pool)
        .await
        .unwrap();
    let (credits, _receiver) = tokio::sync::mpsc::channel(1);
    let job = switch::loyalty::LoyaltyJob {
        every: std::time::Duration::from_secs(60),
        birthday: None,
        anniversary: None,
        expiry_notice_days: 7,
    };
    let failure = switch::loyalty::run_once(&net.pool, NOW, &credits, &job)
        .await
        .unwrap_err();
    assert!(
        failure.contains(&format!("store_credit_lots row {lot}")),
        "{failure}"
    );
    assert!(failure.contains("remaining_rials"), "{failure}");
    let notices: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notifications")
        .fetch_one(&net.pool)
        .await
        .unwrap();
    assert_eq!(notices, 0);
}
