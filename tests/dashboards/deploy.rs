//! The compose stack's aggregator config and the Ansible role.

#![allow(unused_imports)]
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::{files::*, influx::*, names::*, read, root};

#[test]
pub(crate) fn deploy_aggregator_config_loads() {
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

/// Both deploys keep the alert state where the aggregator can write it: the compose
/// stack's root file system is read-only, and the unit sees /etc read-only
/// (`ProtectSystem=strict`). Otherwise a restart forgets firing alerts.
#[test]
fn alert_state_file_is_writable_in_both_deploys() {
    let state_file = |path: &str| -> PathBuf {
        let v: toml::Value = toml::from_str(&read(&root().join(path))).unwrap();
        let f = v["alerts"]["state_file"].as_str().unwrap_or_else(|| panic!("{path}: no [alerts] state_file"));
        assert!(Path::new(f).is_absolute(), "{path}: {f}");
        PathBuf::from(f)
    };
    // Compose: a writable mount, owned by the aggregator's user before it starts.
    let file = state_file("deploy/aggregator.toml");
    let doc = yaml_rust2::YamlLoader::load_from_str(&read(&root().join("deploy/compose.yaml"))).unwrap().remove(0);
    let services = &doc["services"];
    let agg = &services["aggregator"];
    assert_eq!(agg["read_only"].as_bool(), Some(true));
    let mounts: Vec<&str> = agg["volumes"].as_vec().unwrap().iter().filter_map(|v| v.as_str()).collect();
    let mount = mounts
        .iter()
        .find(|m| !m.ends_with(":ro") && m.split(':').nth(1).is_some_and(|at| file.starts_with(at)))
        .unwrap_or_else(|| panic!("no writable mount holds {} in {mounts:?}", file.display()));
    let (volume, at) = mount.split_once(':').unwrap();
    let user = agg["user"].as_str().unwrap();
    let (init, _) = services
        .as_hash()
        .unwrap()
        .iter()
        .find(|(_, s)| {
            let cmd: Vec<&str> =
                s["command"].as_vec().map_or(vec![], |c| c.iter().filter_map(|x| x.as_str()).collect());
            cmd == ["chown", user, at]
                && s["volumes"]
                    .as_vec()
                    .is_some_and(|v| v.iter().any(|m| m.as_str() == Some(&format!("{volume}:{at}"))))
        })
        .unwrap_or_else(|| panic!("no service chowns {volume} to {user}"));
    let init = init.as_str().unwrap();
    assert_eq!(agg["depends_on"][init]["condition"].as_str(), Some("service_completed_successfully"));
    // The unit: its StateDirectory.
    let file = state_file("deploy/aggregator-host.toml");
    let unit = read(&root().join("deploy/wattledger-aggregator.service"));
    assert!(unit.contains("ProtectSystem=strict"), "{unit}");
    let dir = unit.lines().find_map(|l| l.strip_prefix("StateDirectory=")).unwrap();
    assert!(
        file.starts_with(Path::new("/var/lib").join(dir)),
        "{} outside the unit's StateDirectory {dir}",
        file.display()
    );
}

pub(crate) fn ansible_playbook() -> PathBuf {
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

pub(crate) fn run_ansible(args: &[&str], dir: &Path) {
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

/// The role replaces agent.toml only with a config that passes `check --offline`,
/// keeps the token root-only in the credentials folder the unit loads, and has no
/// drop-in left that would load it a second time.
#[test]
fn ansible_role_validates_and_keeps_the_token_root_only() {
    let tasks = read(&root().join("deploy/ansible/roles/wattledger_agent/tasks/main.yml"));
    assert!(tasks.contains("validate: /usr/bin/wattledger check --offline --config %s"), "{tasks}");
    let token = tasks.split("- name: Store token").nth(1).unwrap().split("- name:").next().unwrap();
    assert!(
        token.contains("dest: /etc/wattledger/credentials/store-token") && token.contains("mode: \"0600\""),
        "{token}"
    );
    let defaults = read(&root().join("deploy/ansible/roles/wattledger_agent/defaults/main.yml"));
    assert!(defaults.contains("mode 0600") && !defaults.contains("0640"), "the comment names the mode the task sets");
    let unit = read(&root().join("agents/wattledger-agent.service"));
    assert!(unit.contains("LoadCredential=wattledger:/etc/wattledger/credentials"), "{unit}");
}

/// `ansible-playbook --syntax-check` on the roll-out playbook (ansible-core from `.ci/venv`).
#[test]
pub(crate) fn ansible_playbook_syntax() {
    run_ansible(&["--syntax-check", "-i", "inventory.example.ini", "agents.yml"], &root().join("deploy/ansible"));
}

/// The role's agent.toml template, rendered by Ansible with the role defaults and the
/// example inventory's variables, is a config the agent loads.
#[test]
pub(crate) fn ansible_agent_config_template_loads() {
    let dir = tempfile::tempdir().unwrap();
    let role = root().join("deploy/ansible/roles/wattledger_agent");
    let cases = [
        ("gpu", r#"{"wattledger_gpus": true, "wattledger_workloads": {"gpus": {"0": "training"}}}"#),
        (
            "miners",
            r#"{"wattledger_miner_targets": ["198.51.100.0/24"], "wattledger_default_workload": "btc-fpps",
                "wattledger_workloads": {"miners": {"198.51.100.128/25": "btc-immersion"}}}"#,
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
        let text = read(&dir.path().join(format!("{name}.toml")));
        assert!(text.contains("token_file = \"/etc/wattledger/credentials/store-token\""), "{text}");
        // What the role's `validate:` runs, with the token handed over as systemd
        // does ($CREDENTIALS_DIRECTORY/wattledger_store-token).
        let creds = tempfile::tempdir().unwrap();
        std::fs::write(creds.path().join("wattledger_store-token"), "stand-in-token\n").unwrap();
        let cfg_path = dir.path().join(format!("{name}.toml"));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wattledger"))
            .args(["check", "--offline", "--config"])
            .arg(&cfg_path)
            .env("CREDENTIALS_DIRECTORY", creds.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        wattledger::agent::config::AgentConfig::load(&cfg_path)
            .unwrap_or_else(|e| panic!("rendered {name} config does not load: {e}\n{text}"));
    }
}

/// `ansible-playbook --check` runs the whole role on this host (no systemd, no agent
/// installed: the first run on a new rig) without failing and without changing
/// anything: no file appears under /etc/wattledger or as /usr/bin/wattledger.
#[test]
fn ansible_role_runs_in_check_mode_and_changes_nothing() {
    let before = |p: &str| Path::new(p).exists();
    let (etc, bin) = (before("/etc/wattledger"), before("/usr/bin/wattledger"));
    let etc_listing = || std::fs::read_dir("/etc/wattledger").map(|d| d.count()).unwrap_or(0);
    let etc_before = etc_listing();
    let dir = tempfile::tempdir().unwrap();
    let python = ansible_playbook().with_file_name("python3");
    let inv = dir.path().join("inventory.ini");
    std::fs::write(
        &inv,
        format!(
            "[wattledger_agents]\nlocalhost ansible_connection=local ansible_python_interpreter={}\n",
            python.display()
        ),
    )
    .unwrap();
    let vars = format!(
        r#"{{"ansible_become": false, "wattledger_store_token": "stand-in", "wattledger_binary": {:?}, "wattledger_unit": {:?}}}"#,
        env!("CARGO_BIN_EXE_wattledger"),
        root().join("agents/wattledger-agent.service").display().to_string()
    );
    run_ansible(&["--check", "-i", inv.to_str().unwrap(), "-e", &vars, "agents.yml"], &root().join("deploy/ansible"));
    assert_eq!((before("/etc/wattledger"), before("/usr/bin/wattledger")), (etc, bin), "check mode changed the host");
    assert_eq!(etc_listing(), etc_before, "check mode wrote into /etc/wattledger");
}
