//! The page shell, tables (HTML and CSV) and SVG charts shared by the console's screens.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde_json::Value;

use crate::console::i18n::{self, Locale};
use crate::console::session::Session;
use crate::console::ConsoleState;

/// What every page needs to render: the operator, their language, today.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The operator's name.
    pub name: String,
    /// Their language.
    pub locale: Locale,
    /// Toman beside rials.
    pub toman: bool,
    /// The session's CSRF token.
    pub csrf: String,
    /// Action buttons shown.
    pub write: bool,
    /// A merchant operator's merchant.
    pub merchant: Option<String>,
    /// Now, Unix ms (the switch's clock).
    pub now_ms: i64,
}

impl Ctx {
    /// The context of a signed-in request.
    pub fn new(session: &Session, state: &ConsoleState) -> Ctx {
        Ctx {
            name: session.name.clone(),
            locale: session.locale,
            toman: session.toman,
            csrf: session.csrf.clone(),
            write: session.can_write(),
            merchant: session.merchant().map(str::to_owned),
            now_ms: state.api.clock.now().get(),
        }
    }

    /// An amount in the operator's language.
    pub fn rials(&self, value: i64) -> String {
        self.locale.rials(value, self.toman)
    }

    /// An instant in the operator's language and calendar.
    pub fn instant(&self, unix_ms: i64) -> String {
        self.locale.instant(unix_ms)
    }

    /// A hidden CSRF field for a form.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }
}

/// A page without navigation (sign-in).
pub fn bare(locale: Locale, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(locale.as_str()) dir=(locale.dir()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href="/console/static/console.css";
            }
            body { main { (body) } }
        }
    }
}

/// A signed-in page: navigation, the operator, today's date, sign-out.
pub fn page(ctx: &Ctx, current: &'static str, body: Markup) -> Markup {
    let l = ctx.locale;
    let (today, _) = i18n::tehran(ctx.now_ms);
    let network = ctx.merchant.is_none();
    let links: &[(&str, &str, bool)] = &[
        ("dashboard", "/console", true),
        ("transactions", "/console/transactions", true),
        ("cards", "/console/cards", network),
        ("merchants", "/console/merchants", network),
        ("terminals", "/console/terminals", network),
        ("settlement", "/console/settlement", true),
        ("loyalty", "/console/loyalty", network),
        ("reports", "/console/reports", true),
        ("surveys", "/console/surveys", true),
        ("audit", "/console/audit", network),
        ("settings", "/console/settings", true),
    ];
    html! {
        (DOCTYPE)
        html lang=(l.as_str()) dir=(l.dir()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (l.t(current)) " · " (l.t("title")) }
                link rel="stylesheet" href="/console/static/console.css";
            }
            body {
                header {
                    strong { (l.t("title")) }
                    span class="today" id="today" { (l.t("today")) ": " (l.date(today)) }
                    span class="who" { (ctx.name) }
                    form method="post" action="/console/sign-out" class="inline" {
                        (ctx.csrf_field())
                        button type="submit" id="sign-out" { (l.t("sign_out")) }
                    }
                }
                nav {
                    @for (key, href, shown) in links {
                        @if *shown {
                            a href=(href) class=[(key == &current).then_some("current")] { (l.t(key)) }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The column names of a list of JSON objects: the keys of its first item.
pub fn columns(items: &[Value]) -> Vec<String> {
    items
        .first()
        .and_then(Value::as_object)
        .map(|first| {
            first
                .iter()
                .filter(|(_, value)| !value.is_object() && !value.is_array())
                .map(|(key, _)| key.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// A cell's text: money columns (`…_rials`) in the operator's language, times as dates.
pub fn cell(ctx: &Ctx, key: &str, value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Number(n) if key.ends_with("_rials") => ctx.rials(n.as_i64().unwrap_or_default()),
        Value::Number(n) if key.ends_with("_ms") => ctx.instant(n.as_i64().unwrap_or_default()),
        Value::Number(n) => ctx.locale.digits(&n.to_string()),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A list of JSON objects as an HTML table.
pub fn table(ctx: &Ctx, id: &str, items: &[Value]) -> Markup {
    let columns = columns(items);
    html! {
        table id=(id) {
            thead { tr { @for c in &columns { th { (c) } } } }
            tbody {
                @for item in items {
                    tr { @for c in &columns { td { (cell(ctx, c, item.get(c.as_str()).unwrap_or(&Value::Null))) } } }
                }
            }
        }
    }
}

/// A list of JSON objects as CSV (raw values; a cell starting with `=`, `+`, `-` or `@` is
/// prefixed with `'` so a spreadsheet never runs it), as a download.
pub fn csv(name: &str, items: &[Value]) -> Response {
    let columns = columns(items);
    let mut out = columns.join(",");
    out.push('\n');
    for item in items {
        let row: Vec<String> = columns
            .iter()
            .map(|c| {
                let text = match item.get(c.as_str()) {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                };
                let text = if text.starts_with(['=', '+', '@'])
                    || (text.starts_with('-') && text.parse::<i64>().is_err())
                {
                    format!("'{text}")
                } else {
                    text
                };
                if text.contains([',', '"', '\n']) {
                    format!("\"{}\"", text.replace('"', "\"\""))
                } else {
                    text
                }
            })
            .collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.csv\""),
            ),
        ],
        out,
    )
        .into_response()
}

/// A bar chart as inline SVG: one bar per (label, value), scaled to the largest.
pub fn bar_chart(ctx: &Ctx, id: &str, title: &str, bars: &[(String, i64)]) -> Markup {
    let width: i64 = 640;
    let height: i64 = 220;
    let count = i64::try_from(bars.len()).unwrap_or(1).max(1);
    let slot = (width - 40) / count;
    let max = bars.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"{id}\" role=\"img\" viewBox=\"0 0 {width} {height}\" \
         width=\"{width}\" height=\"{height}\" direction=\"ltr\"><title>{}</title>",
        maud::html! { (title) }.into_string()
    );
    for (i, (label, value)) in (0_i64..).zip(bars) {
        let h = value.saturating_mul(height - 50) / max;
        let x = 30 + i * slot;
        let y = height - 30 - h;
        let w = (slot - 4).max(1);
        let label = maud::html! { (label) }.into_string();
        let shown = ctx.locale.number(*value);
        svg.push_str(&format!(
            "<rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" fill=\"#2b6cb0\" data-label=\"{label}\" data-value=\"{value}\"><title>{label}: {shown}</title></rect>\
             <text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{label}</text>",
            x + w / 2,
            height - 15
        ));
    }
    svg.push_str(&format!(
        "<line x1=\"28\" y1=\"{0}\" x2=\"{width}\" y2=\"{0}\" stroke=\"#444\"/></svg>",
        height - 30
    ));
    html! { figure { figcaption { (title) } (PreEscaped(svg)) } }
}

/// A bar chart of two series as inline SVG: per label, a bar of the first value and a
/// narrower, darker one of the second in front of it (e.g. coupons issued and redeemed),
/// scaled to the largest first value, with a legend.
pub fn paired_bar_chart(
    ctx: &Ctx,
    id: &str,
    title: &str,
    legend: (&str, &str),
    bars: &[(String, i64, i64)],
) -> Markup {
    let width: i64 = 640;
    let height: i64 = 240;
    let count = i64::try_from(bars.len()).unwrap_or(1).max(1);
    let slot = (width - 40) / count;
    let max = bars
        .iter()
        .map(|(_, a, b)| (*a).max(*b))
        .max()
        .unwrap_or(0)
        .max(1);
    let escape = |text: &str| maud::html! { (text) }.into_string();
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"{id}\" role=\"img\" viewBox=\"0 0 {width} {height}\" \
         width=\"{width}\" height=\"{height}\" direction=\"ltr\"><title>{}</title>\
         <rect x=\"30\" y=\"4\" width=\"10\" height=\"10\" fill=\"#90cdf4\"/>\
         <text x=\"44\" y=\"13\" font-size=\"11\">{}</text>\
         <rect x=\"200\" y=\"4\" width=\"10\" height=\"10\" fill=\"#2c5282\"/>\
         <text x=\"214\" y=\"13\" font-size=\"11\">{}</text>",
        escape(title),
        escape(legend.0),
        escape(legend.1)
    );
    for (i, (label, first, second)) in (0_i64..).zip(bars) {
        let x = 30 + i * slot;
        let w = (slot - 4).max(1);
        let label = escape(label);
        for (value, inset, fill, series) in [
            (*first, 0, "#90cdf4", "first"),
            (*second, w / 4, "#2c5282", "second"),
        ] {
            let h = value.saturating_mul(height - 60) / max;
            svg.push_str(&format!(
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{h}\" fill=\"{fill}\" data-label=\"{label}\" \
                 data-series=\"{series}\" data-value=\"{value}\"><title>{label}: {}</title></rect>",
                x + inset,
                height - 30 - h,
                (w - 2 * inset).max(1),
                ctx.locale.number(value)
            ));
        }
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{label}</text>",
            x + w / 2,
            height - 15
        ));
    }
    svg.push_str(&format!(
        "<line x1=\"28\" y1=\"{0}\" x2=\"{width}\" y2=\"{0}\" stroke=\"#444\"/></svg>",
        height - 30
    ));
    html! { figure { figcaption { (title) } (PreEscaped(svg)) } }
}

/// Seconds after which a page showing a figure still being computed reloads itself.
pub const PENDING_RELOAD_SECONDS: u32 = 2;

/// A page whose figure is being computed: it says since when, and reloads itself
/// (`Refresh` header) every [`PENDING_RELOAD_SECONDS`].
pub fn pending(ctx: &Ctx, current: &'static str, title: Markup, since_ms: i64) -> Response {
    let l = ctx.locale;
    let body = html! {
        h1 { (title) }
        p class="note" id="computing" { (l.t("computing")) " " (ctx.instant(since_ms)) "…" }
    };
    (
        [(header::REFRESH, PENDING_RELOAD_SECONDS.to_string())],
        page(ctx, current, body),
    )
        .into_response()
}

/// "As of" and when, for a figure computed earlier.
pub fn as_of(ctx: &Ctx, at_ms: i64) -> Markup {
    html! { p class="note as-of" { (ctx.locale.t("as_of")) " " (ctx.instant(at_ms)) } }
}
