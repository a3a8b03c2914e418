//! Maps devices to workloads (tag `workload`) from `[workloads]`. Sources only tag
//! what they know (GPU UUID and index, miner address, server name); this is the one
//! place that decides which workload a device's energy and revenue belong to.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use crate::agent::config::WorkloadsConfig;
use crate::config::KeyError;
use crate::model::{schema, Point};

#[derive(Debug, Clone, Default)]
pub struct WorkloadMap {
    default: Option<String>,
    gpus: HashMap<String, String>,
    miner_exact: HashMap<String, String>,
    miner_ranges: Vec<(IpNet, String)>,
    inference: HashMap<String, String>,
}

impl WorkloadMap {
    /// The map of `[workloads]`; the error's `at` is the key within it.
    pub fn new(cfg: &WorkloadsConfig) -> Result<WorkloadMap, KeyError> {
        let mut map = WorkloadMap {
            default: cfg.default.clone().filter(|d| !d.is_empty()),
            gpus: cfg.gpus.clone().into_iter().collect(),
            inference: cfg.inference.clone().into_iter().collect(),
            ..WorkloadMap::default()
        };
        for (key, workload) in &cfg.miners {
            if key.contains('/') {
                let net: IpNet = key.parse().map_err(|e| {
                    KeyError::new(
                        format!("miners.\"{key}\""),
                        format!("[workloads] miners: `{key}` is not a CIDR range like 192.0.2.0/24 ({e})"),
                    )
                })?;
                map.miner_ranges.push((net, workload.clone()));
            } else {
                map.miner_exact.insert(key.clone(), workload.clone());
            }
        }
        // Narrowest range first, so the most specific rule wins.
        map.miner_ranges.sort_by_key(|r| std::cmp::Reverse(r.0.prefix_len()));
        Ok(map)
    }

    /// The workload of the device a point describes, falling back to the default.
    pub fn workload_for(&self, p: &Point) -> Option<&str> {
        let specific = match p.measurement.as_str() {
            schema::gpu::MEASUREMENT => p
                .tag_value(schema::gpu::TAG_UUID)
                .and_then(|u| self.gpus.get(u))
                .or_else(|| p.tag_value(schema::gpu::TAG_GPU).and_then(|i| self.gpus.get(i))),
            schema::asic::MEASUREMENT => p.tag_value(schema::asic::TAG_MINER).and_then(|m| self.miner(m)),
            // A meter channel covering one miner belongs to that miner's workload.
            schema::meter::MEASUREMENT if p.tag_value(schema::meter::TAG_COVERS_KIND) == Some("miner") => {
                p.tag_value(schema::meter::TAG_COVERS).and_then(|m| self.miner(m))
            }
            schema::inference::MEASUREMENT => {
                p.tag_value(schema::inference::TAG_SERVER).and_then(|s| self.inference.get(s))
            }
            _ => None,
        };
        specific.map(String::as_str).or(self.default.as_deref())
    }

    fn miner(&self, addr: &str) -> Option<&String> {
        if let Some(w) = self.miner_exact.get(addr) {
            return Some(w);
        }
        let ip = addr
            .parse::<SocketAddr>()
            .map(|s| s.ip())
            .or_else(|_| addr.parse::<IpAddr>())
            .ok()
            .or_else(|| addr.rsplit_once(':').and_then(|(h, _)| h.parse().ok()));
        let ip = ip?;
        if let Some(w) = self.miner_exact.get(&ip.to_string()) {
            return Some(w);
        }
        self.miner_ranges.iter().find(|(net, _)| net.contains(&ip)).map(|(_, w)| w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> WorkloadMap {
        let cfg: WorkloadsConfig = toml::from_str(
            r#"
default = "spare"
gpus = { "GPU-aaaa" = "training", "1" = "inference" }
miners = { "10.0.0.0/16" = "btc", "10.0.5.0/24" = "btc-immersion", "10.0.5.7" = "btc-test" }
inference = { "vllm-a" = "tokens" }
"#,
        )
        .unwrap();
        WorkloadMap::new(&cfg).unwrap()
    }

    fn miner(addr: &str) -> Point {
        Point::new("asic", 0).tag("miner", addr)
    }

    #[test]
    fn most_specific_rule_wins() {
        let m = map();
        let gpu = |uuid: &str, idx: &str| Point::new("gpu", 0).tag("uuid", uuid).tag("gpu", idx);
        assert_eq!(m.workload_for(&gpu("GPU-aaaa", "1")), Some("training"));
        assert_eq!(m.workload_for(&gpu("GPU-bbbb", "1")), Some("inference"));
        assert_eq!(m.workload_for(&gpu("GPU-bbbb", "2")), Some("spare"));
        assert_eq!(m.workload_for(&miner("10.0.5.7:4028")), Some("btc-test"));
        assert_eq!(m.workload_for(&miner("10.0.5.8:4028")), Some("btc-immersion"));
        assert_eq!(m.workload_for(&miner("10.0.9.1")), Some("btc"));
        assert_eq!(m.workload_for(&miner("192.168.1.1:4028")), Some("spare"));
        assert_eq!(m.workload_for(&Point::new("inference", 0).tag("server", "vllm-a")), Some("tokens"));
        assert_eq!(m.workload_for(&Point::new("agent", 0)), Some("spare"));
        let outlet = Point::new("meter", 0).tag("covers_kind", "miner").tag("covers", "10.0.5.7");
        assert_eq!(m.workload_for(&outlet), Some("btc-test"));
    }
}
