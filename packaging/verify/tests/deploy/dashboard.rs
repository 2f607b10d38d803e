//! The Grafana dashboard plots metrics the services really export: every `edgewatch_*` and
//! `http_*` name in a panel query is recorded somewhere in the services' code, and every panel
//! uses the provisioned Prometheus data source. (The JSON-schema check of the dashboard and the
//! provisioning files is scripts/validate-deploy.sh.)

use std::{collections::BTreeSet, path::Path};

use serde_json::Value;

use crate::helpers::repo_root;

/// Metric names (`[a-z_:][a-z0-9_:]*` words) in a PromQL expression, without histogram suffixes.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("edgewatch_") || word.starts_with("http_"))
        .map(|word| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| word.strip_suffix(suffix))
                .unwrap_or(word)
                .to_owned()
        })
        .collect()
}

fn rust_sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
}

#[test]
fn the_dashboard_plots_metrics_the_services_export() {
    let root = repo_root();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("packaging/grafana/dashboards/edgewatch.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut code = String::new();
    for crate_dir in ["cloud", "broker/src", "agent/src"] {
        rust_sources(&root.join(crate_dir), &mut code);
    }
    let panels = dashboard["panels"].as_array().expect("panels");
    let titles: Vec<&str> = panels.iter().map(|p| p["title"].as_str().unwrap()).collect();
    for wanted in ["Fleet ingest rate", "latency", "Buffer drops", "Bus depth", "Errors"] {
        assert!(titles.iter().any(|t| t.contains(wanted)), "no `{wanted}` panel in {titles:?}");
    }
    let mut names = BTreeSet::new();
    for panel in panels {
        assert_eq!(panel["datasource"]["uid"], "edgewatch-prometheus", "{}", panel["title"]);
        for target in panel["targets"].as_array().expect("targets") {
            names.extend(metric_names(target["expr"].as_str().expect("an expr")));
        }
    }
    assert!(names.len() >= 10, "{names:?}");
    let missing: Vec<&String> =
        names.iter().filter(|name| !code.contains(&format!("\"{name}\""))).collect();
    assert!(missing.is_empty(), "the dashboard plots metrics no code records: {missing:?}");
}

#[test]
fn metric_names_are_read_from_expressions() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))"
        ),
        vec!["http_request_duration_seconds"]
    );
    assert_eq!(metric_names("sum(edgewatch_live_clients) + up"), vec!["edgewatch_live_clients"]);
}
