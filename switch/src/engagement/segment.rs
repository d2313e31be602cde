//! Segments (docs/campaigns.md): a boolean expression over a member's tags, tier and RFM
//! scores, written as JSON. Pure: parsing with the path of every problem, and evaluation
//! against one member's facts.
//!
//! ```json
//! {"all": [{"tag": "VIP"}, {"not": {"tier": "bronze"}},
//!          {"any": [{"rfm": {"r_min": 4}}, {"tag": "EVENT-2026"}]}]}
//! ```

use std::collections::BTreeSet;

use serde_json::{json, Value};

/// Deepest nesting accepted.
pub const DEPTH_MAX: usize = 8;
/// Most nodes in one expression.
pub const NODES_MAX: usize = 100;

/// A segment's expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Every part holds (an empty list holds: every member).
    All(Vec<Expr>),
    /// At least one part holds (an empty list never does).
    Any(Vec<Expr>),
    /// The part does not hold.
    Not(Box<Expr>),
    /// The member carries the tag (by code).
    Tag(String),
    /// The member holds the tier (by code).
    Tier(String),
    /// The member's RFM scores (1–5, docs/operator-api.md) reach each minimum; a member
    /// without a confirmed purchase in the RFM window has no scores and never matches.
    Rfm {
        /// Least recency score.
        r_min: u8,
        /// Least frequency score.
        f_min: u8,
        /// Least monetary score.
        m_min: u8,
    },
}

/// What an expression is evaluated against: one member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The codes of the member's tags.
    pub tags: BTreeSet<String>,
    /// The code of the tier the member holds (the higher-ranked of what their activity earned
    /// and the floor their cards were given), if any.
    pub tier: Option<String>,
    /// Recency, frequency and monetary scores, when the member has them.
    pub rfm: Option<(u8, u8, u8)>,
}

impl Expr {
    /// Parses `value`; every problem is named by its path (`expression.all[1].tag`).
    ///
    /// # Errors
    /// The problems, each with its path and message.
    pub fn parse(value: &Value) -> Result<Expr, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mut nodes = 0;
        let expr = parse_at(value, "expression", 1, &mut nodes, &mut problems);
        if nodes > NODES_MAX {
            problems.push((
                "expression".to_owned(),
                format!("at most {NODES_MAX} nodes"),
            ));
        }
        match expr {
            Some(expr) if problems.is_empty() => Ok(expr),
            _ => Err(problems),
        }
    }

    /// Whether the member with `facts` is in the segment.
    pub fn matches(&self, facts: &Facts) -> bool {
        match self {
            Expr::All(parts) => parts.iter().all(|part| part.matches(facts)),
            Expr::Any(parts) => parts.iter().any(|part| part.matches(facts)),
            Expr::Not(part) => !part.matches(facts),
            Expr::Tag(code) => facts.tags.contains(code),
            Expr::Tier(code) => facts.tier.as_deref() == Some(code.as_str()),
            Expr::Rfm {
                r_min,
                f_min,
                m_min,
            } => facts
                .rfm
                .is_some_and(|(r, f, m)| r >= *r_min && f >= *f_min && m >= *m_min),
        }
    }

    /// The expression as JSON, as it is stored and answered.
    pub fn to_json(&self) -> Value {
        match self {
            Expr::All(parts) => json!({"all": parts.iter().map(Expr::to_json).collect::<Vec<_>>()}),
            Expr::Any(parts) => json!({"any": parts.iter().map(Expr::to_json).collect::<Vec<_>>()}),
            Expr::Not(part) => json!({"not": part.to_json()}),
            Expr::Tag(code) => json!({ "tag": code }),
            Expr::Tier(code) => json!({ "tier": code }),
            Expr::Rfm {
                r_min,
                f_min,
                m_min,
            } => json!({"rfm": {"r_min": r_min, "f_min": f_min, "m_min": m_min}}),
        }
    }

    /// Every tag and tier code it names, with the path naming it, to check they exist.
    pub fn names(&self, path: &str, out: &mut Vec<(String, &'static str, String)>) {
        match self {
            Expr::All(parts) | Expr::Any(parts) => {
                let key = if matches!(self, Expr::All(_)) {
                    "all"
                } else {
                    "any"
                };
                for (index, part) in parts.iter().enumerate() {
                    part.names(&format!("{path}.{key}[{index}]"), out);
                }
            }
            Expr::Not(part) => part.names(&format!("{path}.not"), out),
            Expr::Tag(code) => out.push((format!("{path}.tag"), "tag", code.clone())),
            Expr::Tier(code) => out.push((format!("{path}.tier"), "tier", code.clone())),
            Expr::Rfm { .. } => {}
        }
    }
}

fn parse_at(
    value: &Value,
    path: &str,
    depth: usize,
    nodes: &mut usize,
    problems: &mut Vec<(String, String)>,
) -> Option<Expr> {
    *nodes += 1;
    if depth > DEPTH_MAX {
        problems.push((path.to_owned(), format!("nested deeper than {DEPTH_MAX}")));
        return None;
    }
    let Some((key, inner)) = value
        .as_object()
        .filter(|object| object.len() == 1)
        .and_then(|object| object.iter().next())
    else {
        problems.push((
            path.to_owned(),
            "an object with one of all, any, not, tag, tier, rfm".to_owned(),
        ));
        return None;
    };
    let here = format!("{path}.{key}");
    match key.as_str() {
        "all" | "any" => {
            let Some(items) = inner.as_array() else {
                problems.push((here, "a list of expressions".to_owned()));
                return None;
            };
            let mut parts = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let at = format!("{here}[{index}]");
                if let Some(part) = parse_at(item, &at, depth + 1, nodes, problems) {
                    parts.push(part);
                }
            }
            Some(if key == "all" {
                Expr::All(parts)
            } else {
                Expr::Any(parts)
            })
        }
        "not" => parse_at(inner, &here, depth + 1, nodes, problems).map(|e| Expr::Not(Box::new(e))),
        "tag" | "tier" => match inner.as_str() {
            Some(code) if !code.is_empty() && code.len() <= 32 => Some(if key == "tag" {
                Expr::Tag(code.to_owned())
            } else {
                Expr::Tier(code.to_owned())
            }),
            _ => {
                problems.push((here, "a code, 1..=32 characters".to_owned()));
                None
            }
        },
        "rfm" => {
            let Some(object) = inner.as_object() else {
                problems.push((here, "an object of r_min, f_min, m_min".to_owned()));
                return None;
            };
            let mut mins = [1_u8; 3];
            let mut ok = true;
            for name in object.keys() {
                if !["r_min", "f_min", "m_min"].contains(&name.as_str()) {
                    problems.push((format!("{here}.{name}"), "unknown field".to_owned()));
                    ok = false;
                }
            }
            for (min, name) in mins.iter_mut().zip(["r_min", "f_min", "m_min"]) {
                if let Some(value) = object.get(name) {
                    match value.as_u64().filter(|score| (1..=5).contains(score)) {
                        Some(score) => *min = u8::try_from(score).unwrap_or(5),
                        None => {
                            problems.push((format!("{here}.{name}"), "1..=5".to_owned()));
                            ok = false;
                        }
                    }
                }
            }
            ok.then_some(Expr::Rfm {
                r_min: mins[0],
                f_min: mins[1],
                m_min: mins[2],
            })
        }
        _ => {
            problems.push((
                here,
                "unknown: one of all, any, not, tag, tier, rfm".to_owned(),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;

    fn facts(tags: &[&str], tier: &[&str], rfm: Option<(u8, u8, u8)>) -> Facts {
        Facts {
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            tier: tier.first().map(|t| (*t).to_owned()),
            rfm,
        }
    }

    #[test]
    fn an_expression_matches_as_written() {
        let expr = Expr::parse(&json!({"all": [
            {"tag": "VIP"},
            {"not": {"tier": "bronze"}},
            {"any": [{"rfm": {"r_min": 4}}, {"tag": "EVENT"}]}
        ]}))
        .unwrap();
        assert!(expr.matches(&facts(&["VIP"], &["gold"], Some((4, 1, 1)))));
        assert!(expr.matches(&facts(&["VIP", "EVENT"], &[], None)));
        assert!(!expr.matches(&facts(&["VIP"], &["bronze"], Some((5, 5, 5)))));
        assert!(!expr.matches(&facts(&["VIP"], &["gold"], Some((3, 5, 5)))));
        assert!(!expr.matches(&facts(&[], &["gold"], Some((5, 5, 5)))));
        assert!(Expr::All(vec![]).matches(&Facts::default()));
        assert!(!Expr::Any(vec![]).matches(&Facts::default()));
    }

    #[test]
    fn every_problem_is_named_by_its_path() {
        let problems = Expr::parse(&json!({"all": [
            {"tag": ""},
            {"colour": "red"},
            {"rfm": {"r_min": 9, "x": 1}},
            {"not": [1]},
            {"tag": "A", "tier": "B"}
        ]}))
        .unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "expression.all[0].tag",
                "expression.all[1].colour",
                "expression.all[2].rfm.x",
                "expression.all[2].rfm.r_min",
                "expression.all[3].not",
                "expression.all[4]",
            ]
        );
        let mut deep = json!({"tag": "A"});
        for _ in 0..DEPTH_MAX {
            deep = json!({ "not": deep });
        }
        assert!(Expr::parse(&deep).is_err());
    }

    fn expr() -> impl Strategy<Value = Expr> {
        let leaf = prop_oneof![
            (0..3_u8).prop_map(|t| Expr::Tag(format!("T{t}"))),
            (0..2_u8).prop_map(|t| Expr::Tier(format!("R{t}"))),
            (1..=5_u8, 1..=5_u8, 1..=5_u8).prop_map(|(r_min, f_min, m_min)| Expr::Rfm {
                r_min,
                f_min,
                m_min
            }),
        ];
        leaf.prop_recursive(4, 40, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Expr::All),
                prop::collection::vec(inner.clone(), 0..4).prop_map(Expr::Any),
                inner.prop_map(|e| Expr::Not(Box::new(e))),
            ]
        })
    }

    fn member() -> impl Strategy<Value = Facts> {
        (
            prop::collection::btree_set((0..3_u8).prop_map(|t| format!("T{t}")), 0..3),
            prop::option::of((0..2_u8).prop_map(|t| format!("R{t}"))),
            prop::option::of((1..=5_u8, 1..=5_u8, 1..=5_u8)),
        )
            .prop_map(|(tags, tier, rfm)| Facts { tags, tier, rfm })
    }

    proptest! {
        /// What is stored parses back to the same expression; `not` negates; `all` and `any`
        /// are each other's duals (De Morgan).
        #[test]
        fn stored_expressions_mean_the_same(e in expr(), f in member()) {
            let back = Expr::parse(&e.to_json()).unwrap();
            prop_assert_eq!(&back, &e);
            prop_assert_eq!(Expr::Not(Box::new(e.clone())).matches(&f), !e.matches(&f));
            if let Expr::All(parts) = &e {
                let dual = Expr::Not(Box::new(Expr::Any(
                    parts.iter().cloned().map(|p| Expr::Not(Box::new(p))).collect(),
                )));
                prop_assert_eq!(dual.matches(&f), e.matches(&f));
            }
        }
    }
}
