//! Goal: the operator API's lists of records (merchants, members, rules, tiers, groups) come a
//! page at a time by code: pages follow each other without overlap or gap, `next` is the last
//! code of a full page and null at the end, and a wrong `after`, `limit` or parameter is
//! refused 422 naming it.
//!
//! Method: the in-process switch of `common::Harness` with the test network, a read token, and
//! plain HTTP/1.1 over TCP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::Value;
use switch::api::auth::{self, Role};
use switch::domain::UnixMillis;

async fn get(harness: &Harness, token: &str, path: &str) -> (u16, Value) {
    let admin = harness.running().admin_addr;
    let (status, _, body) = admin_request(admin, "GET", path, token, None, None).await;
    (status, body)
}

/// Every code of `section`, read one page of `limit` at a time.
async fn paged(harness: &Harness, token: &str, section: &str, limit: usize) -> Vec<String> {
    let path = format!("/api/v1/{}", section.replace('_', "-"));
    let mut codes = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..100 {
        let url = match &after {
            Some(after) => format!("{path}?limit={limit}&after={after}"),
            None => format!("{path}?limit={limit}"),
        };
        let (status, page) = get(harness, token, &url).await;
        assert_eq!(status, 200, "{url}: {page}");
        let items = page[section].as_array().unwrap();
        assert!(items.len() <= limit);
        codes.extend(
            items
                .iter()
                .map(|item| item["code"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(next) => {
                assert_eq!(items.len(), limit, "next only after a full page");
                assert_eq!(Some(next), codes.last().map(String::as_str));
                after = Some(next.to_owned());
            }
            None => return codes,
        }
    }
    panic!("{section}: paging never ended");
}

#[tokio::test]
async fn lists_page_by_code() {
    let harness = Harness::start().await;
    let token = auth::add_token(
        harness.pool().await,
        "finance-bob",
        Role::Read,
        UnixMillis::new(START_MS),
    )
    .await
    .unwrap();
    for section in ["merchants", "members", "rules", "tiers", "merchant_groups"] {
        let path = format!("/api/v1/{}", section.replace('_', "-"));
        let (status, whole) = get(&harness, &token, &path).await;
        assert_eq!(status, 200);
        let all: Vec<String> = whole[section]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["code"].as_str().unwrap().to_owned())
            .collect();
        assert!(!all.is_empty(), "{section}");
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(all, sorted, "{section} by code");
        assert_eq!(whole["next"], Value::Null);
        for limit in [1, 2] {
            assert_eq!(
                paged(&harness, &token, section, limit).await,
                all,
                "{section}"
            );
        }
    }
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=x", "limit"),
        ("limit=1&limit=2", "limit"),
        ("after=a%20b", "after"),
        ("sort=code", "sort"),
    ] {
        let (status, body) = get(&harness, &token, &format!("/api/v1/merchants?{query}")).await;
        assert_eq!(status, 422, "{query}: {body}");
        assert_eq!(body["problems"][0]["field"], field, "{query}: {body}");
    }
}
