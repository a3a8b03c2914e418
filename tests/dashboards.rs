//! Grafana dashboards, alert rules and the deploy stack, checked against the schema and
//! executed against a real InfluxDB.
//!
//! Every InfluxQL query in `dashboards/grafana/` is parsed: each measurement, field and
//! tag it names must be a constant in `src/model/schema.rs`, so that a renamed field
//! breaks this test instead of a dashboard. Then a small data set (GPUs, miners, agents,
//! `workload_efficiency` windows) is written to the test InfluxDB and every panel,
//! template-variable and alert query runs with `$timeFilter`, `$__interval` and the
//! template variables substituted the way Grafana does it. Panels must return data;
//! alert rules are evaluated (reduce, threshold, math) and must fire for exactly the
//! devices and workloads the data set makes faulty.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------- schema.rs

/// Names per measurement, read from the constants in `src/model/schema.rs`.
struct Schema {
    tags: BTreeMap<String, BTreeSet<String>>,
    fields: BTreeMap<String, BTreeSet<String>>,
}

fn parse_schema() -> Schema {
    let text = read(&root().join("src/model/schema.rs"));
    let mut global_tags = BTreeSet::new();
    let mut modules: Vec<Vec<(String, String)>> = Vec::new();
    let mut current: Option<Vec<(String, String)>> = None;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with("pub mod ") {
            current = Some(Vec::new());
        } else if l == "}" {
            if let Some(m) = current.take() {
                modules.push(m);
            }
        } else if let Some(rest) = l.strip_prefix("pub const ") {
            let Some((name, value)) = rest.split_once(": &str = ") else { continue };
            let value = value.trim_end_matches(';').trim_matches('"').to_string();
            match current.as_mut() {
                Some(m) => m.push((name.to_string(), value)),
                None if name.starts_with("TAG_") => {
                    global_tags.insert(value);
                }
                None => {}
            }
        }
    }
    let mut schema = Schema { tags: BTreeMap::new(), fields: BTreeMap::new() };
    for m in modules {
        let Some((_, meas)) = m.iter().find(|(n, _)| n == "MEASUREMENT") else { continue };
        let mut tags = global_tags.clone();
        let mut fields = BTreeSet::new();
        for (n, v) in &m {
            if n == "MEASUREMENT" {
                continue;
            }
            if n.starts_with("TAG_") {
                tags.insert(v.clone());
            } else {
                fields.insert(v.clone());
            }
        }
        schema.tags.insert(meas.clone(), tags);
        schema.fields.insert(meas.clone(), fields);
    }
    assert!(schema.fields.contains_key("gpu") && schema.fields["gpu"].contains("power_w"), "schema.rs parse failed");
    schema
}

// ---------------------------------------------------------------- InfluxQL names

#[derive(Debug, PartialEq)]
enum Tok {
    Quoted(String),
    Str,
    Regex,
    Word(String),
    Var,
    Punct(char),
}

fn tokenize(q: &str) -> Result<Vec<Tok>, String> {
    let c: Vec<char> = q.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let until = |i: usize, end: char| -> Result<usize, String> {
        let mut j = i + 1;
        while j < c.len() && c[j] != end {
            if c[j] == '\\' {
                j += 1;
            }
            j += 1;
        }
        if j >= c.len() {
            return Err(format!("unterminated {end} in: {q}"));
        }
        Ok(j)
    };
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '"' {
            let j = until(i, '"')?;
            out.push(Tok::Quoted(c[i + 1..j].iter().collect()));
            i = j + 1;
        } else if ch == '\'' {
            i = until(i, '\'')? + 1;
            out.push(Tok::Str);
        } else if ch == '/' && matches!(out.last(), Some(Tok::Punct('~'))) {
            i = until(i, '/')? + 1;
            out.push(Tok::Regex);
        } else if ch == '$' {
            i += 1;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(Tok::Var);
        } else if ch.is_alphanumeric() || ch == '_' || ch == '.' {
            let s = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '.') {
                i += 1;
            }
            out.push(Tok::Word(c[s..i].iter().collect()));
        } else {
            out.push(Tok::Punct(ch));
            i += 1;
        }
    }
    Ok(out)
}

const KEYWORDS: &[&str] = &[
    "select", "from", "where", "and", "or", "group", "by", "fill", "none", "null", "as", "show", "tag", "values",
    "with", "key", "time", "true", "false", "limit", "order", "desc", "asc",
];
const FUNCTIONS: &[&str] = &[
    "mean",
    "sum",
    "count",
    "last",
    "first",
    "max",
    "min",
    "median",
    "non_negative_derivative",
    "non_negative_difference",
    "moving_average",
];

/// Checks that every name `q` uses exists in the schema for the measurement(s) it reads.
/// Identifiers must be double-quoted so that they can be told from keywords.
fn check_names(q: &str, schema: &Schema) -> Result<(), String> {
    let toks = tokenize(q)?;
    let mut measurements = Vec::new();
    let mut aliases = BTreeSet::new();
    // (name, role): role is "tag", "field" or "any".
    let mut uses: Vec<(String, &str)> = Vec::new();
    let mut in_group_by = false;
    // Parenthesis depth, and the depth a GROUP BY clause started at (it ends with the
    // subquery that holds it).
    let mut depth = 0usize;
    let mut group_by_depth = 0usize;
    for (i, t) in toks.iter().enumerate() {
        let prev = |k: usize| if i >= k { toks.get(i - k) } else { None };
        let word_is = |t: Option<&Tok>, w: &str| matches!(t, Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w));
        match t {
            Tok::Word(w) => {
                let lw = w.to_ascii_lowercase();
                let duration = w.chars().next().is_some_and(|c| c.is_ascii_digit());
                if !duration && !KEYWORDS.contains(&lw.as_str()) && !FUNCTIONS.contains(&lw.as_str()) {
                    return Err(format!("bare word `{w}` (quote identifiers, or teach this test the keyword) in: {q}"));
                }
                if lw == "by" && word_is(prev(1), "group") {
                    in_group_by = true;
                    group_by_depth = depth;
                } else if lw == "fill" || lw == "limit" || lw == "order" {
                    in_group_by = false;
                }
            }
            Tok::Punct('(') => depth += 1,
            Tok::Punct(')') => {
                depth = depth.saturating_sub(1);
                if depth < group_by_depth {
                    in_group_by = false;
                }
            }
            Tok::Quoted(name) => {
                if word_is(prev(1), "from") {
                    measurements.push(name.clone());
                } else if word_is(prev(1), "as") {
                    aliases.insert(name.clone());
                } else if word_is(prev(2), "key") || in_group_by {
                    uses.push((name.clone(), "tag"));
                } else if matches!(prev(1), Some(Tok::Punct('('))) && matches!(prev(2), Some(Tok::Word(_))) {
                    uses.push((name.clone(), "field"));
                } else {
                    uses.push((name.clone(), "any"));
                }
            }
            _ => {}
        }
    }
    if measurements.is_empty() {
        return Err(format!("no FROM \"measurement\" in: {q}"));
    }
    for m in &measurements {
        if !schema.fields.contains_key(m) {
            return Err(format!("measurement \"{m}\" is not in src/model/schema.rs: {q}"));
        }
    }
    for (name, role) in uses {
        let is_tag = measurements.iter().any(|m| schema.tags[m].contains(&name));
        let is_field = measurements.iter().any(|m| schema.fields[m].contains(&name)) || aliases.contains(&name);
        let ok = match role {
            "tag" => is_tag,
            "field" => is_field,
            _ => is_tag || is_field,
        };
        if !ok {
            return Err(format!("\"{name}\" is not a {role} of {measurements:?} in src/model/schema.rs: {q}"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- files

fn yaml_to_json(y: &yaml_rust2::Yaml) -> Value {
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

fn load_yaml(path: &Path) -> Value {
    let docs = yaml_rust2::YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(docs.len(), 1, "{}: one YAML document expected", path.display());
    yaml_to_json(&docs[0])
}

fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn dashboards() -> Vec<(String, Value)> {
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

fn panels(d: &Value) -> Vec<&Value> {
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

fn alert_rules() -> Vec<Value> {
    let doc = load_yaml(&root().join("dashboards/grafana/provisioning/alerting/wattledger-rules.yaml"));
    assert_eq!(doc["apiVersion"], 1);
    doc["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap().clone()).collect()
}

fn datasource() -> Value {
    let doc = load_yaml(&root().join("dashboards/grafana/provisioning/datasources/wattledger.yaml"));
    doc["datasources"][0].clone()
}

const UNITS: &[&str] = &[
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

fn check_unit(unit: &Value, what: &str) {
    let u = unit.as_str().unwrap_or_else(|| panic!("{what}: no unit"));
    assert!(UNITS.contains(&u) || u.starts_with("suffix:"), "{what}: unknown Grafana unit id {u:?}");
}

// ---------------------------------------------------------------- static checks

#[test]
fn provisioning_files_are_consistent() {
    let schema = parse_schema();
    let ds = datasource();
    let uid = ds["uid"].as_str().unwrap();
    assert_eq!(ds["type"], "influxdb");
    assert_eq!(ds["jsonData"]["version"], "InfluxQL");
    assert_eq!(ds["url"], "${INFLUX_URL}", "URL from the environment");
    for secret in ["password", "httpHeaderValue1"] {
        let v = ds["secureJsonData"][secret].as_str().unwrap_or_else(|| panic!("secureJsonData.{secret} missing"));
        assert!(v.contains("${INFLUX_"), "secureJsonData.{secret} must come from the environment, not the file");
    }
    assert!(ds["jsonData"].get("password").is_none() && ds.get("password").is_none(), "no plain-text password");

    let provider = load_yaml(&root().join("dashboards/grafana/provisioning/dashboards/wattledger.yaml"));
    assert_eq!(provider["providers"][0]["type"], "file");
    let provider_path = provider["providers"][0]["options"]["path"].as_str().unwrap().to_string();
    let compose = read(&root().join("deploy/compose.yaml"));
    assert!(
        compose.contains(&format!("../dashboards/grafana/dashboards:{provider_path}")),
        "deploy/compose.yaml must mount the dashboards where the provider reads them ({provider_path})"
    );

    let mut uids = BTreeSet::new();
    for (file, d) in dashboards() {
        assert!(uids.insert(d["uid"].as_str().unwrap().to_string()), "{file}: duplicate uid");
        for v in d["templating"]["list"].as_array().unwrap() {
            if v["type"] == "query" {
                assert_eq!(v["datasource"]["uid"], uid, "{file}: variable {}", v["name"]);
                check_names(v["query"].as_str().unwrap(), &schema).unwrap_or_else(|e| panic!("{file}: {e}"));
            }
        }
        for p in panels(&d) {
            let what = format!("{file}: panel {:?}", p["title"]);
            check_unit(&p["fieldConfig"]["defaults"]["unit"], &what);
            for o in p["fieldConfig"]["overrides"].as_array().unwrap() {
                for prop in o["properties"].as_array().unwrap() {
                    if prop["id"] == "unit" {
                        check_unit(&prop["value"], &what);
                    }
                }
            }
            assert_eq!(p["datasource"]["uid"], uid, "{what}");
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{what}: no query");
            for t in targets {
                assert_eq!(t["rawQuery"], true, "{what}");
                let q = t["query"].as_str().unwrap();
                check_names(q, &schema).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert!(q.contains("$timeFilter"), "{what}: no $timeFilter");
                if q.contains("GROUP BY time(") {
                    assert!(q.contains("time($__interval)"), "{what}: buckets must follow $__interval");
                }
            }
        }
    }

    let rules = alert_rules();
    let mut names = BTreeSet::new();
    for r in &rules {
        let what = format!("alert {}", r["uid"]);
        assert!(names.insert(r["uid"].as_str().unwrap().to_string()), "{what}: duplicate uid");
        assert!(r["for"].as_str().is_some_and(|f| f.ends_with('m')), "{what}: for");
        assert!(["warning", "critical"].contains(&r["labels"]["severity"].as_str().unwrap()), "{what}: severity");
        assert!(r["annotations"]["summary"].is_string(), "{what}: summary");
        let refs: BTreeSet<&str> = r["data"].as_array().unwrap().iter().map(|d| d["refId"].as_str().unwrap()).collect();
        assert!(refs.contains(r["condition"].as_str().unwrap()), "{what}: condition names no query");
        for d in r["data"].as_array().unwrap() {
            if d["datasourceUid"] == "__expr__" {
                let m = &d["model"];
                let expr = m["expression"].as_str().unwrap();
                for id in &refs {
                    if expr == *id || expr.contains(&format!("${id}")) {
                        assert_ne!(*id, d["refId"].as_str().unwrap(), "{what}: refers to itself");
                    }
                }
                if m["type"] != "math" {
                    assert!(refs.contains(expr), "{what}: {expr} is no refId");
                }
            } else {
                assert_eq!(d["datasourceUid"], uid, "{what}");
                check_names(d["model"]["query"].as_str().unwrap(), &schema).unwrap_or_else(|e| panic!("{what}: {e}"));
            }
        }
    }
    for wanted in [
        "unprofitable",
        "jth-high",
        "gpu-idle-burn",
        "hashrate-drop",
        "miner-offline",
        "gpu-lost",
        "device-silent",
        "agent-silent",
        "coverage-low",
    ] {
        assert!(names.contains(&format!("wattledger-{wanted}")), "alert rule {wanted} missing");
    }
}

/// The name check is what catches a renamed field; it must refuse what is not in the schema.
#[test]
fn name_check_refuses_unknown_names() {
    let schema = parse_schema();
    let good = r#"SELECT mean("power_w") FROM "gpu" WHERE "host" =~ /^$host$/ AND $timeFilter GROUP BY time($__interval), "gpu""#;
    check_names(good, &schema).unwrap();
    for bad in [
        good.replace("\"power_w\"", "\"power_watts\""),
        good.replace("GROUP BY time($__interval), \"gpu\"", "GROUP BY time($__interval), \"power_w\""),
        good.replace("FROM \"gpu\"", "FROM \"gpus\""),
        good.replace("\"host\" =~", "\"hostname\" =~"),
        good.replace("FROM \"gpu\"", "FROM \"asic\""),
        good.replace("\"power_w\"", "power_w"),
    ] {
        assert!(check_names(&bad, &schema).is_err(), "accepted: {bad}");
    }
}

#[test]
fn deploy_aggregator_config_loads() {
    // The loader reads the secret files compose mounts under /run/secrets; point them at
    // a temporary directory holding stand-in tokens.
    let dir = tempfile::tempdir().unwrap();
    for name in ["influx_token", "api_token"] {
        std::fs::write(dir.path().join(name), "stand-in-token\n").unwrap();
    }
    let text = read(&root().join("deploy/aggregator.toml"));
    assert!(text.contains("/run/secrets/influx_token") && text.contains("/run/secrets/api_token"));
    let copy = dir.path().join("aggregator.toml");
    std::fs::write(&copy, text.replace("/run/secrets/", &format!("{}/", dir.path().display()))).unwrap();
    let cfg = wattledger::aggregate::config::AggregatorConfig::load(&copy)
        .unwrap_or_else(|e| panic!("deploy/aggregator.toml: {e}"));
    assert!(cfg.api_token().unwrap().is_some(), "the API needs a token in the stack");
    assert_eq!(cfg.store.database.as_deref(), Some("wattledger"), "the bucket Grafana's datasource reads");
    assert_eq!(cfg.store.url.as_deref(), Some("http://influxdb:8086"), "the compose service name");
    let compose = read(&root().join("deploy/compose.yaml"));
    assert!(compose.contains("aggregator.toml"), "compose mounts deploy/aggregator.toml");
}

fn ansible_playbook() -> PathBuf {
    let bin = std::env::var_os("WATTLEDGER_TEST_ANSIBLE_PLAYBOOK")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".ci/venv/bin/ansible-playbook"));
    assert!(
        bin.exists(),
        "no ansible-playbook at {}: run .ci/run, or `python3 -m venv .ci/venv && .ci/venv/bin/pip install ansible-core`, \
         or set WATTLEDGER_TEST_ANSIBLE_PLAYBOOK",
        bin.display()
    );
    bin
}

fn run_ansible(args: &[&str], dir: &Path) {
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(ansible_playbook())
        .current_dir(dir)
        .env("ANSIBLE_HOME", home.path())
        .env("ANSIBLE_LOCAL_TEMP", home.path().join("tmp"))
        .env("ANSIBLE_REMOTE_TEMP", home.path().join("tmp"))
        .env("ANSIBLE_NOCOLOR", "1")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ansible-playbook {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ansible-playbook --syntax-check` on the roll-out playbook (ansible-core from `.ci/venv`).
#[test]
fn ansible_playbook_syntax() {
    run_ansible(&["--syntax-check", "-i", "inventory.example.ini", "agents.yml"], &root().join("deploy/ansible"));
}

/// The role's agent.toml template, rendered by Ansible with the role defaults and the
/// example inventory's variables, is a config the agent loads.
#[test]
fn ansible_agent_config_template_loads() {
    let dir = tempfile::tempdir().unwrap();
    let role = root().join("deploy/ansible/roles/wattledger_agent");
    let cases = [
        ("gpu", r#"{"wattledger_gpus": true, "wattledger_workloads": {"gpus": {"0": "training"}}}"#),
        (
            "miners",
            r#"{"wattledger_miner_targets": ["10.20.0.0/22"], "wattledger_default_workload": "btc-fpps",
                "wattledger_workloads": {"miners": {"10.20.3.0/24": "btc-immersion"}}}"#,
        ),
    ];
    for (name, vars) in cases {
        let play = format!(
            "- hosts: localhost\n  connection: local\n  gather_facts: false\n  vars: {{ ansible_python_interpreter: \"{{{{ ansible_playbook_python }}}}\" }}\n  vars_files: [{defaults:?}]\n  tasks:\n    \
             - ansible.builtin.template: {{ src: {src:?}, dest: {dest:?} }}\n",
            defaults = role.join("defaults/main.yml").display().to_string(),
            src = role.join("templates/agent.toml.j2").display().to_string(),
            dest = dir.path().join(format!("{name}.toml")).display().to_string(),
        );
        let play_path = dir.path().join(format!("{name}.yml"));
        std::fs::write(&play_path, play).unwrap();
        run_ansible(&["-i", "localhost,", "-e", vars, play_path.to_str().unwrap()], dir.path());
        // systemd's $CREDENTIALS_DIRECTORY, here a directory of stand-in secrets.
        let text = read(&dir.path().join(format!("{name}.toml")));
        assert!(text.contains("${CREDENTIALS_DIRECTORY}/store-token"), "{text}");
        std::fs::write(dir.path().join("store-token"), "stand-in-token\n").unwrap();
        let cfg_path = dir.path().join(format!("{name}-resolved.toml"));
        std::fs::write(&cfg_path, text.replace("${CREDENTIALS_DIRECTORY}", &dir.path().display().to_string())).unwrap();
        wattledger::agent::config::AgentConfig::load(&cfg_path)
            .unwrap_or_else(|e| panic!("rendered {name} config does not load: {e}\n{text}"));
    }
}

// ---------------------------------------------------------------- real InfluxDB

struct Influx {
    http: reqwest::Client,
    url: String,
    db: String,
}

impl Influx {
    async fn raw(&self, q: &str, db: bool) -> Result<Value, String> {
        let mut form = vec![("q", q.to_string()), ("epoch", "ms".to_string())];
        if db {
            form.push(("db", self.db.clone()));
        }
        let r = self.http.post(format!("{}/query", self.url)).form(&form).send().await.map_err(|e| e.to_string())?;
        let status = r.status();
        let body: Value = r.json().await.map_err(|e| e.to_string())?;
        if let Some(e) = body.get("error") {
            return Err(format!("HTTP {status}: {e}"));
        }
        let res = &body["results"][0];
        if let Some(e) = res.get("error") {
            return Err(format!("InfluxQL error: {e}"));
        }
        Ok(res.clone())
    }
    async fn query(&self, q: &str) -> Result<Value, String> {
        self.raw(q, true).await
    }
    async fn write(&self, body: &str) {
        let r = self
            .http
            .post(format!("{}/write?db={}&precision=s", self.url, self.db))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert_eq!(status.as_u16(), 204, "write: {}", r.text().await.unwrap());
    }
}

const GPU_A_TAGS: &str = "site=texas,host=gpu-a,workload=h100-reserved,model=NVIDIA\\ H100\\ 80GB\\ HBM3";

/// Six hours of one-minute samples ending at `now_s`, shaped so that each alert rule has
/// exactly the culprits `expected_firing` names.
fn data_set(now_s: i64) -> String {
    let mut lp = String::new();
    let start = now_s - 6 * 3600;
    let mut energy = [0.0f64; 3];
    for (k, t) in (start..=now_s).step_by(60).enumerate() {
        let age = now_s - t;
        let k = k as i64;
        // GPUs: gpu-a/0 busy, gpu-a/1 idle but burning power, gpu-b/0 lost 10 min ago.
        for (i, (power, util)) in [(650.0 + (k % 7) as f64, 95), (300.0, 2)].into_iter().enumerate() {
            energy[i] += power * 60.0;
            lp += &format!(
                "gpu,{GPU_A_TAGS},gpu={i},uuid=GPU-a{i} power_w={power},energy_j={},util_gpu_pct={util}i,util_mem_pct=40i,\
                 mem_used_bytes=40000000000i,mem_total_bytes=85899345920i,temp_c={}i,sm_clock_mhz=1980i,power_limit_w=700,status=\"ok\" {t}\n",
                energy[i],
                60 + util / 4
            );
        }
        let b = "gpu,site=nordics,host=gpu-b,workload=a100-spot,gpu=0,uuid=GPU-b0,model=NVIDIA\\ A100-SXM4-80GB";
        if age > 600 {
            energy[2] += 250.0 * 60.0;
            lp += &format!(
                "{b} power_w=250,energy_j={},util_gpu_pct=60i,util_mem_pct=30i,mem_used_bytes=20000000000i,mem_total_bytes=85899345920i,\
                 temp_c=55i,sm_clock_mhz=1410i,power_limit_w=400,status=\"ok\" {t}\n",
                energy[2]
            );
        } else {
            lp += &format!("{b} status=\"lost\" {t}\n");
        }
        // Miners: .11 a healthy S21, .12 an old S9 (100 J/TH), .13 loses half its hashrate
        // for the last 20 min, .14 offline for the last 20 min, .15 silent for 30 min
        // behind an agent (minerlan-2) that is silent too.
        let miners: [(&str, &str, &str, f64, f64); 5] = [
            ("10.20.0.11", "minerlan-1", "S21", 200.0, 3500.0),
            ("10.20.0.12", "minerlan-1", "S9", 13.5, 1350.0),
            (
                "10.20.0.13",
                "minerlan-1",
                "S19",
                if age < 1200 { 50.0 } else { 95.0 },
                if age < 1200 { 1800.0 } else { 3250.0 },
            ),
            ("10.20.0.14", "minerlan-1", "S21", 200.0, 3500.0),
            ("10.20.0.15", "minerlan-2", "S21", 200.0, 3500.0),
        ];
        for (n, (ip, host, model, ths, w)) in miners.into_iter().enumerate() {
            let tags = format!(
                "asic,site=texas,host={host},workload=btc-s21,miner={ip}:4028,make=antminer,model={model},firmware=stock,power_source=reported"
            );
            if ip == "10.20.0.15" && age < 1800 {
                continue;
            }
            if ip == "10.20.0.14" && age < 1200 {
                lp += &format!("{tags} online=false {t}\n");
                continue;
            }
            lp += &format!(
                "{tags} power_w={w},hashrate_ths={ths},diff_accepted={},shares_accepted={}i,shares_rejected={}i,temp_c_max={}i,\
                 fan_rpm_avg=4200i,uptime_s={}i,online=true {t}\n",
                (k * 60) as f64 * ths * 1e3,
                k * 100,
                k * (n as i64 + 1) / 2,
                65 + n,
                86_400 + (t - start)
            );
        }
        // Agents: gpu-a and minerlan-1 report; minerlan-2 has been silent for 30 min.
        for (site, host, sources) in
            [("texas", "gpu-a", "nvml"), ("texas", "minerlan-1", "miners"), ("texas", "minerlan-2", "miners")]
        {
            if host == "minerlan-2" && age < 1800 {
                continue;
            }
            lp += &format!(
                "agent,site={site},host={host} points_collected={}i,points_shipped={}i,points_spooled={}i,points_dropped=0i,\
                 points_rejected=0i,errors={}i,spool_errors=0i,ship_errors={}i,spool_bytes={}i {t}\n",
                k * 130,
                k * 130 - 5,
                5,
                k / 30,
                k / 90,
                4096 + (k % 5) * 512
            );
            lp += &format!(
                "agent,site={site},host={host},source={sources} points_collected={}i,errors={}i,collect_latency_ms={} {t}\n",
                k * 120,
                k / 30,
                12.5 + (k % 3) as f64
            );
        }
    }
    // workload_efficiency: 5m windows over the last 6 h and 1h windows, stamped at the
    // window start. btc-s21 earns less per kWh than it pays; llm-api is 60 % covered.
    for (len, label) in [(300i64, "5m"), (3600, "1h")] {
        let last_start = (now_s / len) * len - len;
        let mut ws = last_start - 6 * 3600 + len;
        while ws <= last_start {
            for (wl, kind, power_w, rev_per_kwh, coverage, extra) in [
                ("h100-reserved", "ai_contract", 950.0, 3.25, 1.0, String::new()),
                ("btc-s21", "bitcoin_fpps", 12_000.0, 0.040, 0.98, format!(",work_th={}", 600.0 * len as f64)),
                ("llm-api", "ai_tokens", 400.0, 1.10, 0.6, format!(",tokens={}", 2_000 * len)),
            ] {
                let energy_j = power_w * len as f64 * coverage;
                let kwh = energy_j / 3.6e6;
                let revenue = kwh * rev_per_kwh;
                let cost = kwh * 1.08 * 0.045;
                lp += &format!(
                    "workload_efficiency,site=texas,workload={wl},kind={kind},window={label} window_s={len},energy_j={energy_j},\
                     facility_energy_j={},revenue_usd={revenue},energy_cost_usd={cost},profit_usd={},revenue_usd_per_kwh={rev_per_kwh},\
                     profit_usd_per_kwh={},coverage={coverage},avg_power_w={},devices=4i{extra} {ws}\n",
                    energy_j * 1.08,
                    revenue - cost,
                    (revenue - cost) / kwh,
                    power_w * coverage
                );
            }
            ws += len;
        }
    }
    lp
}

/// The label (tag) that names the culprit of each rule, and who must be firing.
fn expected_firing() -> BTreeMap<&'static str, (&'static str, Vec<&'static str>)> {
    BTreeMap::from([
        ("wattledger-unprofitable", ("workload", vec!["btc-s21"])),
        ("wattledger-jth-high", ("miner", vec!["10.20.0.12:4028"])),
        ("wattledger-gpu-idle-burn", ("uuid_or_gpu", vec!["gpu-a/1"])),
        ("wattledger-hashrate-drop", ("miner", vec!["10.20.0.13:4028"])),
        ("wattledger-miner-offline", ("miner", vec!["10.20.0.14:4028"])),
        ("wattledger-gpu-lost", ("uuid_or_gpu", vec!["gpu-b/0"])),
        ("wattledger-device-silent", ("miner", vec!["10.20.0.15:4028"])),
        ("wattledger-agent-silent", ("host", vec!["minerlan-2"])),
        ("wattledger-coverage-low", ("workload", vec!["llm-api"])),
    ])
}

/// Grafana's InfluxQL `$timeFilter`.
fn time_filter(from_ms: i64, to_ms: i64) -> String {
    format!("time >= {from_ms}ms and time <= {to_ms}ms")
}

/// Grafana's `$__interval`: the range over about 1000 points, rounded down to a round
/// interval, never below the datasource's `timeInterval`.
fn interval(range_ms: i64, min_s: i64) -> String {
    let raw_s = range_ms / 1000 / 1000;
    let nice = [1, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 10800, 21600, 43200, 86400];
    let s = nice.iter().rev().find(|n| **n <= raw_s).copied().unwrap_or(1).max(min_s);
    format!("{s}s")
}

/// Grafana's InfluxDB regex escaping of a template value.
fn regex_escape(v: &str) -> String {
    let mut out = String::new();
    for c in v.chars() {
        if "\\^$*+?.()|{}[]/".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Replaces `$name` (longest names first so that `$host` does not eat `$hostname`).
fn substitute(q: &str, vars: &[(String, String)]) -> String {
    let mut vars = vars.to_vec();
    vars.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
    let mut q = q.to_string();
    for (n, v) in vars {
        q = q.replace(&format!("${n}"), &v);
    }
    let left =
        q.match_indices('$').any(|(i, _)| q[i + 1..].starts_with(|c: char| c.is_alphabetic() || c == '_' || c == '{'));
    assert!(!left, "unsubstituted variable in: {q}");
    q
}

/// Series of a result: (tags, values of the last column).
/// One result series: its tags and its values in time order.
type TaggedValues = (BTreeMap<String, String>, Vec<Option<f64>>);

fn series(res: &Value) -> Vec<TaggedValues> {
    res["series"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let tags = s["tags"]
                .as_object()
                .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
                .unwrap_or_default();
            let vals = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_array().unwrap().last().unwrap().as_f64())
                .collect();
            (tags, vals)
        })
        .collect()
}

type Frames = BTreeMap<BTreeMap<String, String>, f64>;

/// Grafana's server-side expressions, as far as the rules use them.
fn reduce(s: &[TaggedValues], reducer: &str) -> Frames {
    s.iter()
        .filter_map(|(tags, vals)| {
            let v: Vec<f64> = vals.iter().flatten().copied().filter(|x| x.is_finite()).collect();
            let r = match reducer {
                "last" => *v.last()?,
                "mean" => v.iter().sum::<f64>() / v.len().max(1) as f64,
                "max" => v.iter().copied().fold(f64::MIN, f64::max),
                "min" => v.iter().copied().fold(f64::MAX, f64::min),
                other => panic!("reducer {other} not known to this test"),
            };
            if v.is_empty() {
                return None;
            }
            Some((tags.clone(), r))
        })
        .collect()
}

fn threshold(f: &Frames, op: &str, v: f64) -> Frames {
    f.iter()
        .map(|(k, x)| {
            let hit = match op {
                "gt" => *x > v,
                "lt" => *x < v,
                other => panic!("threshold {other} not known to this test"),
            };
            (k.clone(), if hit { 1.0 } else { 0.0 })
        })
        .collect()
}

/// `$A > 150 && $B < 10`, `$C < 0.8 * $D`: numbers, `$refs`, `* / + -`, comparisons, `&& ||`.
fn math(expr: &str, frames: &BTreeMap<String, Frames>) -> Frames {
    let refs: Vec<&String> = frames.keys().filter(|r| expr.contains(&format!("${r}"))).collect();
    let first = &frames[refs[0]];
    let mut out = Frames::new();
    for labels in first.keys() {
        // Series of different queries are joined on identical labels.
        if !refs.iter().all(|r| frames[*r].contains_key(labels)) {
            continue;
        }
        let vars: BTreeMap<&str, f64> = refs.iter().map(|r| (r.as_str(), frames[*r][labels])).collect();
        out.insert(labels.clone(), eval(expr, &vars));
    }
    out
}

fn eval(expr: &str, vars: &BTreeMap<&str, f64>) -> f64 {
    let mut toks: Vec<String> = Vec::new();
    let c: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < c.len() {
        if c[i].is_whitespace() {
            i += 1;
        } else if c[i] == '$' || c[i].is_ascii_digit() || c[i] == '.' {
            let s = i;
            i += 1;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '.' || c[i] == '_') {
                i += 1;
            }
            toks.push(c[s..i].iter().collect());
        } else {
            let two: String = c[i..(i + 2).min(c.len())].iter().collect();
            if ["&&", "||", ">=", "<=", "==", "!="].contains(&two.as_str()) {
                toks.push(two);
                i += 2;
            } else {
                toks.push(c[i].to_string());
                i += 1;
            }
        }
    }
    // Precedence climbing over binary operators.
    fn prec(op: &str) -> Option<u8> {
        Some(match op {
            "||" => 1,
            "&&" => 2,
            ">" | "<" | ">=" | "<=" | "==" | "!=" => 3,
            "+" | "-" => 4,
            "*" | "/" => 5,
            _ => return None,
        })
    }
    fn atom(t: &[String], p: &mut usize, vars: &BTreeMap<&str, f64>) -> f64 {
        let tok = &t[*p];
        *p += 1;
        if tok == "(" {
            let v = bin(t, p, 0, vars);
            assert_eq!(t[*p], ")");
            *p += 1;
            v
        } else if let Some(r) = tok.strip_prefix('$') {
            vars[r]
        } else {
            tok.parse().unwrap_or_else(|_| panic!("math token {tok}"))
        }
    }
    fn bin(t: &[String], p: &mut usize, min: u8, vars: &BTreeMap<&str, f64>) -> f64 {
        let mut lhs = atom(t, p, vars);
        while *p < t.len() {
            let op = t[*p].clone();
            let Some(pr) = prec(&op) else { break };
            if pr < min {
                break;
            }
            *p += 1;
            let rhs = bin(t, p, pr + 1, vars);
            let b = |x: bool| if x { 1.0 } else { 0.0 };
            lhs = match op.as_str() {
                "||" => b(lhs != 0.0 || rhs != 0.0),
                "&&" => b(lhs != 0.0 && rhs != 0.0),
                ">" => b(lhs > rhs),
                "<" => b(lhs < rhs),
                ">=" => b(lhs >= rhs),
                "<=" => b(lhs <= rhs),
                "==" => b(lhs == rhs),
                "!=" => b(lhs != rhs),
                "+" => lhs + rhs,
                "-" => lhs - rhs,
                "*" => lhs * rhs,
                _ => lhs / rhs,
            };
        }
        lhs
    }
    let mut p = 0;
    let v = bin(&toks, &mut p, 0, vars);
    assert_eq!(p, toks.len(), "math expression not fully parsed: {expr}");
    v
}

fn culprit(labels: &BTreeMap<String, String>, key: &str) -> String {
    if key == "uuid_or_gpu" {
        format!("{}/{}", labels["host"], labels["gpu"])
    } else {
        labels.get(key).cloned().unwrap_or_else(|| panic!("no label {key} in {labels:?}"))
    }
}

#[tokio::test]
async fn every_query_runs_against_influxdb() {
    let url = common::server_url("WATTLEDGER_TEST_INFLUXDB_URL");
    let influx = Influx { http: reqwest::Client::new(), url, db: common::unique_name("wl_test_dash") };
    influx.raw(&format!("CREATE DATABASE \"{}\"", influx.db), false).await.unwrap();
    let now_s = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64 / 60 * 60;
    influx.write(&data_set(now_s)).await;
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;

    let min_interval_s: i64 =
        datasource()["jsonData"]["timeInterval"].as_str().unwrap().trim_end_matches('s').parse().unwrap();
    let mut failures = Vec::new();

    for (file, d) in dashboards() {
        // The dashboard's default range, `now-24h` style.
        let from = d["time"]["from"].as_str().unwrap();
        let hours: i64 = from.trim_start_matches("now-").trim_end_matches('h').parse().unwrap();
        let from_ms = now_ms - hours * 3_600_000;
        let mut vars = vec![
            ("timeFilter".to_string(), time_filter(from_ms, now_ms)),
            ("__interval".to_string(), interval(now_ms - from_ms, min_interval_s)),
        ];
        // Template variables in order, each as Grafana's "All" (multi) or first value.
        for v in d["templating"]["list"].as_array().unwrap() {
            let name = v["name"].as_str().unwrap().to_string();
            let value = if v["type"] == "query" {
                let q = substitute(v["query"].as_str().unwrap(), &vars);
                let res = influx.query(&q).await.unwrap_or_else(|e| panic!("{file}: variable {name}: {e}\n{q}"));
                let values: Vec<String> = res["series"][0]["values"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{file}: variable {name} has no values: {q}"))
                    .iter()
                    .map(|r| r[1].as_str().unwrap().to_string())
                    .collect();
                if v["multi"] == true || v["includeAll"] == true {
                    format!("({})", values.iter().map(|s| regex_escape(s)).collect::<Vec<_>>().join("|"))
                } else {
                    values[0].clone()
                }
            } else {
                v["current"]["value"].as_str().unwrap().to_string()
            };
            vars.push((name, value));
        }
        for p in panels(&d) {
            for t in p["targets"].as_array().unwrap() {
                let q = substitute(t["query"].as_str().unwrap(), &vars);
                match influx.query(&q).await {
                    Err(e) => failures.push(format!("{file}: panel {}: {e}\n  {q}", p["title"])),
                    Ok(res) => {
                        let s = series(&res);
                        let has_value = s.iter().any(|(_, v)| v.iter().any(Option::is_some))
                            || res["series"].as_array().is_some_and(|a| !a.is_empty()) && p["type"] == "table";
                        if !has_value {
                            failures.push(format!("{file}: panel {} returned no data\n  {q}", p["title"]));
                        }
                    }
                }
            }
        }
    }

    let expected = expected_firing();
    for r in alert_rules() {
        let uid = r["uid"].as_str().unwrap();
        let mut frames: BTreeMap<String, Frames> = BTreeMap::new();
        let mut raw = BTreeMap::new();
        for d in r["data"].as_array().unwrap() {
            let id = d["refId"].as_str().unwrap().to_string();
            let m = &d["model"];
            if d["datasourceUid"] != "__expr__" {
                let from = d["relativeTimeRange"]["from"].as_i64().unwrap();
                let to = d["relativeTimeRange"]["to"].as_i64().unwrap();
                let tf = time_filter(now_ms - from * 1000, now_ms - to * 1000);
                let iv = format!("{}ms", m["intervalMs"].as_i64().unwrap());
                let q =
                    substitute(m["query"].as_str().unwrap(), &[("timeFilter".into(), tf), ("__interval".into(), iv)]);
                match influx.query(&q).await {
                    Ok(res) => {
                        raw.insert(id, series(&res));
                    }
                    Err(e) => {
                        failures.push(format!("alert {uid} query {id}: {e}\n  {q}"));
                        break;
                    }
                }
                continue;
            }
            let expr = m["expression"].as_str().unwrap();
            let f = match m["type"].as_str().unwrap() {
                "reduce" => reduce(&raw[expr], m["reducer"].as_str().unwrap()),
                "threshold" => {
                    let ev = &m["conditions"][0]["evaluator"];
                    threshold(&frames[expr], ev["type"].as_str().unwrap(), ev["params"][0].as_f64().unwrap())
                }
                "math" => math(expr, &frames),
                other => panic!("alert {uid}: expression type {other} not known to this test"),
            };
            frames.insert(id, f);
        }
        let Some(cond) = frames.get(r["condition"].as_str().unwrap()) else { continue };
        let (key, want) = &expected[uid];
        let firing: BTreeSet<String> = cond.iter().filter(|(_, v)| **v != 0.0).map(|(l, _)| culprit(l, key)).collect();
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        if firing != want {
            failures.push(format!(
                "alert {uid}: firing for {firing:?}, expected {want:?} (evaluated {} series)",
                cond.len()
            ));
        }
    }

    influx.raw(&format!("DROP DATABASE \"{}\"", influx.db), false).await.unwrap();
    assert!(failures.is_empty(), "{} problem(s):\n{}", failures.len(), failures.join("\n"));
}
