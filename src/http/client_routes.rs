//! The `"routes"` of a `/clients` body: a registered client's own limits on routes,
//! `{"<route>": {"capacity": int, "rate_per_sec": number} | null}`. A route given limits must
//! exist; `null` removes the client's own limits on a route (also on one that no longer exists).
//! Limits are checked like a route's own in the pool file.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::client::Limits;
use crate::registry::PoolsView;
use crate::route::{check_limits, RouteLimits};

/// Limits to set (`Some`) or remove (`None`), by route; an error names the field.
pub type RouteChanges = BTreeMap<String, Option<Limits>>;

/// Reads `"routes"`; the error names the field (`routes.search.capacity: ...`).
pub fn parse(value: &Value) -> Result<RouteChanges, String> {
    let Value::Object(routes) = value else {
        return Err("routes: must be an object of route names".into());
    };
    let mut changes = RouteChanges::new();
    for (route, limits) in routes {
        let shown: String = route.chars().take(64).collect();
        let limits = match limits {
            Value::Null => None,
            given => {
                let limits: RouteLimits = serde_json::from_value(given.clone()).map_err(|e| {
                    format!("routes.{shown}: give {{\"capacity\": int, \"rate_per_sec\": number}} or null ({e})")
                })?;
                check_limits(&limits).map_err(|(field, problem)| {
                    let field = field.trim_start_matches("limits.");
                    format!("routes.{shown}.{field}: {problem}")
                })?;
                Some(Limits::new(limits.capacity, limits.rate_per_sec))
            }
        };
        changes.insert(route.clone(), limits);
    }
    Ok(changes)
}

/// Every route given limits is a route of `view`.
pub fn check_known(changes: &RouteChanges, view: &PoolsView) -> Result<(), String> {
    let unknown = changes
        .iter()
        .find(|(route, limits)| limits.is_some() && view.routes().named(route).is_none());
    match unknown {
        Some((route, _)) => Err(format!("routes.{route}: there is no route named {route:?}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_limits_and_nulls_and_names_bad_fields() {
        let changes = parse(&json!({"search": {"capacity": 5, "rate_per_sec": 0.5}, "old": null}))
            .expect("valid");
        assert_eq!(changes["search"], Some(Limits::new(5, 0.5)));
        assert_eq!(changes["old"], None);
        let cases = [
            (json!([]), "routes: must be an object"),
            (
                json!({"s": {"capacity": 0, "rate_per_sec": 1}}),
                "routes.s.capacity",
            ),
            (
                json!({"s": {"capacity": 1, "rate_per_sec": -1}}),
                "routes.s.rate_per_sec",
            ),
            (json!({"s": {"capacity": 1}}), "routes.s: give"),
            (json!({"s": 3}), "routes.s: give"),
        ];
        for (value, problem) in cases {
            let err = parse(&value).expect_err(&value.to_string());
            assert!(err.starts_with(problem), "{value}: {err}");
        }
    }
}
