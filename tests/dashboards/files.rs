//! Reading the dashboards, alert rules and provisioning files.

#![allow(unused_imports)]
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::{influx::*, names::*, read, root};

// files

pub(crate) fn yaml_to_json(y: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match y {
        Yaml::Real(s) => json!(s.parse::<f64>().unwrap()),
        Yaml::Integer(i) => json!(i),
        Yaml::String(s) => json!(s),
        Yaml::Boolean(b) => json!(b),
        Yaml::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        other => panic!("unsupported YAML key {other:?}"),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Yaml::Null => Value::Null,
        other => panic!("unsupported YAML value {other:?}"),
    }
}

pub(crate) fn load_yaml(path: &Path) -> Value {
    let docs = yaml_rust2::YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(docs.len(), 1, "{}: one YAML document expected", path.display());
    yaml_to_json(&docs[0])
}

pub(crate) fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

pub(crate) fn dashboards() -> Vec<(String, Value)> {
    let v: Vec<(String, Value)> = files("dashboards/grafana/dashboards", "json")
        .into_iter()
        .map(|p| {
            let d: Value = serde_json::from_str(&read(&p)).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), d)
        })
        .collect();
    assert_eq!(v.len(), 4, "four dashboards expected");
    v
}

pub(crate) fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        if p["type"] == "row" {
            out.extend(p["panels"].as_array().into_iter().flatten());
        } else {
            out.push(p);
        }
    }
    out
}

pub(crate) fn alert_rules() -> Vec<Value> {
    let doc = load_yaml(&root().join("dashboards/grafana/provisioning/alerting/wattledger-rules.yaml"));
    assert_eq!(doc["apiVersion"], 1);
    doc["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap().clone()).collect()
}

pub(crate) fn datasource() -> Value {
    let doc = load_yaml(&root().join("dashboards/grafana/provisioning/datasources/wattledger.yaml"));
    doc["datasources"][0].clone()
}

pub(crate) const UNITS: &[&str] = &[
    "watt",
    "joule",
    "kwatth",
    "currencyUSD",
    "percent",
    "percentunit",
    "celsius",
    "bytes",
    "THs",
    "short",
    "cps",
    "ms",
    "s",
    "string",
    "rotrpm",
    "bool_on_off",
    "dateTimeFromNow",
];

pub(crate) fn check_unit(unit: &Value, what: &str) {
    let u = unit.as_str().unwrap_or_else(|| panic!("{what}: no unit"));
    assert!(UNITS.contains(&u) || u.starts_with("suffix:"), "{what}: unknown Grafana unit id {u:?}");
}
