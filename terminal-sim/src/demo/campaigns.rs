//! The demo's online top-up and occasion campaign (docs/top-up.md, docs/campaigns.md), both
//! through the operator API before the traffic:
//!
//! - a top-up order for one card, paid by the demo acting as the payment gateway: a forged
//!   callback (refused), the signed one (credited), the same again (a duplicate);
//! - a tag given by file to every fifth member, a segment (the tag, or gold), an event for this
//!   week, and a campaign for it with a coupon and an SMS: previewed, run, and run again (which
//!   reaches nobody). After the traffic its report says how many coupons purchases used.

use std::net::SocketAddr;

use anyhow::{bail, Context};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use switch::domain::CivilDate;

use crate::operator;

/// The secret the demo's payment gateway signs callbacks with (`LSW_PAYMENT_GATEWAY_SECRET`).
pub const PAYMENT_GATEWAY_SECRET: &str = "demo-payment-gateway-secret-0123456789";
/// The card topped up online.
pub const TOP_UP_CARD: &str = "C-0000001";
/// How much.
pub const TOP_UP_RIALS: i64 = 500_000;
/// The campaign's code (also its tag, segment and event).
pub const CAMPAIGN: &str = "DEMO-WEEK";
/// The campaign coupon's amount.
pub const CAMPAIGN_COUPON_RIALS: i64 = 20_000;

/// What the top-up did.
#[derive(Debug, Clone, Default)]
pub struct TopUpDemo {
    /// The card.
    pub card: String,
    /// The order's reference.
    pub reference: String,
    /// The amount.
    pub amount_rials: i64,
    /// The status a forged callback got (401).
    pub forged_status: u16,
    /// The signed callback's outcome (`accepted`).
    pub outcome: String,
    /// The same callback again (`duplicate`).
    pub repeat_outcome: String,
}

/// What the campaign did.
#[derive(Debug, Clone, Default)]
pub struct CampaignDemo {
    /// Its code.
    pub code: String,
    /// Members the preview counted.
    pub previewed: i64,
    /// The preview's cost ceiling.
    pub cost_ceiling_rials: i64,
    /// Members the run reached.
    pub reached: i64,
    /// Coupons it issued.
    pub coupons: i64,
    /// Messages it queued.
    pub messages: i64,
    /// Members the second run reached (0).
    pub rerun_reached: i64,
    /// After the traffic: coupons used by confirmed purchases.
    pub redeemed: i64,
    /// After the traffic: Σ G of those purchases.
    pub revenue_rials: i64,
}

async fn call(
    admin: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> anyhow::Result<operator::Answer> {
    let bearer = format!("Bearer {token}");
    let mut headers = vec![("authorization", bearer.as_str())];
    if let Some(key) = key {
        headers.push(("idempotency-key", key));
    }
    let answer = operator::call(admin, method, path, &headers, body)
        .await
        .with_context(|| format!("{method} {path}"))?;
    if !matches!(answer.status, 200 | 201) {
        bail!("{method} {path}: {} {}", answer.status, answer.body);
    }
    Ok(answer)
}

fn sign(secret: &str, body: &str) -> anyhow::Result<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).context("the secret")?;
    mac.update(body.as_bytes());
    Ok(hex::encode(mac.finalize().into_bytes()))
}

/// Creates a top-up order for [`TOP_UP_CARD`] and pays it as the payment gateway would.
///
/// # Errors
/// When a call fails or is answered otherwise than the flow expects.
pub async fn top_up(admin: SocketAddr, token: &str) -> anyhow::Result<TopUpDemo> {
    let path = format!("/api/v1/cards/{TOP_UP_CARD}/top-up-orders");
    let body = json!({ "amount_rials": TOP_UP_RIALS }).to_string();
    let order = call(admin, token, "POST", &path, Some("demo-top-up-1"), &body).await?;
    let reference = order.body["reference"]
        .as_str()
        .context("the order's reference")?
        .to_owned();
    let callback = json!({
        "payment_reference": "DEMO-PAYMENT-1",
        "order_reference": reference,
        "amount_rials": TOP_UP_RIALS,
        "currency": "IRR",
        "status": "paid",
    })
    .to_string();
    let post = |signature: String| {
        let callback = callback.clone();
        async move {
            let headers = [("x-signature", signature.as_str())];
            operator::call(
                admin,
                "POST",
                "/api/v1/payments/callback",
                &headers,
                &callback,
            )
            .await
            .context("the payment callback")
        }
    };
    let forged = post(sign("not-the-gateway-secret-000000", &callback)?).await?;
    let paid = post(sign(PAYMENT_GATEWAY_SECRET, &callback)?).await?;
    if paid.status != 200 {
        bail!("the payment callback: {} {}", paid.status, paid.body);
    }
    let again = post(sign(PAYMENT_GATEWAY_SECRET, &callback)?).await?;
    let outcome =
        |answer: &operator::Answer| answer.body["outcome"].as_str().unwrap_or("?").to_owned();
    Ok(TopUpDemo {
        card: TOP_UP_CARD.to_owned(),
        reference,
        amount_rials: TOP_UP_RIALS,
        forged_status: forged.status,
        outcome: outcome(&paid),
        repeat_outcome: outcome(&again),
    })
}

/// Tags every fifth of `members` members by file, defines the segment, this week's event and
/// the campaign, previews it, runs it twice.
///
/// # Errors
/// When a call fails.
pub async fn run_campaign(
    admin: SocketAddr,
    token: &str,
    members: usize,
    today: CivilDate,
) -> anyhow::Result<CampaignDemo> {
    let tag = format!("/api/v1/tags/{CAMPAIGN}");
    call(
        admin,
        token,
        "PUT",
        &tag,
        None,
        r#"{"name": "Demo week guests"}"#,
    )
    .await?;
    let mut file = String::from("member\n");
    for member in (0..members).step_by(5) {
        file.push_str(&format!("MB-{member:07}\n"));
    }
    call(admin, token, "POST", &format!("{tag}/import"), None, &file).await?;
    let segment = json!({"name": "Guests or gold", "expression": {"any": [{"tag": CAMPAIGN}, {"tier": "gold"}]}});
    let path = format!("/api/v1/segments/{CAMPAIGN}");
    call(admin, token, "PUT", &path, None, &segment.to_string()).await?;
    let week = json!({
        "name": "Demo week",
        "starts_on": today.to_string(),
        "ends_on": CivilDate::from_days_since_epoch(today.days_since_epoch() + 6).to_string(),
    });
    let path = format!("/api/v1/occasions/{CAMPAIGN}");
    call(admin, token, "PUT", &path, None, &week.to_string()).await?;
    let campaign = json!({
        "name": "Demo week",
        "segment": CAMPAIGN,
        "occasion": {"kind": "event", "code": CAMPAIGN},
        "coupon": {"fixed_rials": CAMPAIGN_COUPON_RIALS, "valid_days": 7},
        "sms_fa": "هفته باشگاه: ۲۰٬۰۰۰ ریال تخفیف خرید بعدی شما.",
        "sms_en": "Club week: 20,000 rials off your next purchase.",
    });
    let path = format!("/api/v1/campaigns/{CAMPAIGN}");
    call(admin, token, "PUT", &path, None, &campaign.to_string()).await?;
    let preview = call(admin, token, "GET", &format!("{path}/preview"), None, "").await?;
    let run = call(admin, token, "POST", &format!("{path}/run"), None, "").await?;
    let again = call(admin, token, "POST", &format!("{path}/run"), None, "").await?;
    let number = |value: &serde_json::Value| value.as_i64().unwrap_or(-1);
    Ok(CampaignDemo {
        code: CAMPAIGN.to_owned(),
        previewed: number(&preview.body["members"]),
        cost_ceiling_rials: number(&preview.body["cost_ceiling_rials"]),
        reached: number(&run.body["reached"]),
        coupons: number(&run.body["coupons_issued"]),
        messages: number(&run.body["messages_queued"]),
        rerun_reached: number(&again.body["reached"]),
        ..CampaignDemo::default()
    })
}

/// After the traffic: the campaign's report.
///
/// # Errors
/// When the call fails.
pub async fn report(admin: SocketAddr, token: &str, demo: &mut CampaignDemo) -> anyhow::Result<()> {
    let path = format!("/api/v1/campaigns/{CAMPAIGN}/report");
    let report = call(admin, token, "GET", &path, None, "").await?;
    demo.redeemed = report.body["coupons_redeemed"].as_i64().unwrap_or(-1);
    demo.revenue_rials = report.body["revenue_rials"].as_i64().unwrap_or(-1);
    Ok(())
}

/// Prints the top-up and the campaign in the engagement section of the summary.
pub fn print(top_up: &TopUpDemo, campaign: &CampaignDemo) {
    println!(
        "  online top-up {} of {} rials for {}: forged callback {}, signed callback {}, the same again {}",
        top_up.reference,
        top_up.amount_rials,
        top_up.card,
        top_up.forged_status,
        top_up.outcome,
        top_up.repeat_outcome
    );
    println!(
        "  campaign {}: preview {} members (cost ceiling {} rials); run: {} reached, {} coupons, {} SMS; run again: {} reached; during the traffic {} coupons redeemed on {} rials of purchases",
        campaign.code,
        campaign.previewed,
        campaign.cost_ceiling_rials,
        campaign.reached,
        campaign.coupons,
        campaign.messages,
        campaign.rerun_reached,
        campaign.redeemed,
        campaign.revenue_rials
    );
}
