//! Every example agent config in `agents/examples/` loads and passes validation.

use std::path::Path;

use wattledger::agent::config::AgentConfig;

#[test]
fn agent_examples_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("agents/examples");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let cfg = AgentConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!cfg.agent.site.is_empty());
            names.push(path.file_stem().unwrap().to_string_lossy().into_owned());
        }
    }
    names.sort();
    assert_eq!(names, ["gpu-rig", "inference-node", "meters", "miner-lan"]);
    let node = AgentConfig::load(&dir.join("inference-node.toml")).unwrap();
    assert_eq!(node.inference.len(), 2);
    let lan = AgentConfig::load(&dir.join("miner-lan.toml")).unwrap();
    assert_eq!(lan.miners.unwrap().targets.len(), 2);
    let meters = AgentConfig::load(&dir.join("meters.toml")).unwrap().meters.unwrap();
    assert_eq!(meters.devices.len(), 5);
    wattledger::collect::meters::MetersSource::new(&meters).unwrap();
}
