//! Reading back what a private influxd stored (the server itself is
//! `common::PrivateInfluxd`, which these tests stop and restart).

use crate::common::PrivateInfluxd;

impl PrivateInfluxd {
    pub async fn query(&self, db: &str, q: &str) -> serde_json::Value {
        let resp = reqwest::Client::new()
            .post(format!("{}/query", self.url))
            .query(&[("db", db), ("q", q), ("epoch", "ns")])
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(status.is_success(), "{q}: {status} {body}");
        body
    }

    pub async fn create_db(&self, db: &str) {
        self.query(db, &format!("CREATE DATABASE \"{db}\"")).await;
    }

    /// Every stored point as `measurement|tag=v,...|time_ns`.
    pub async fn point_keys(&self, db: &str, measurement_regex: &str) -> std::collections::BTreeSet<String> {
        let body = self.query(db, &format!("SELECT * FROM /{measurement_regex}/ GROUP BY *")).await;
        let mut out = std::collections::BTreeSet::new();
        let result = &body["results"][0];
        assert!(result.get("error").is_none(), "{body}");
        assert!(result.get("partial").is_none(), "query result was cut: {body}");
        for series in result["series"].as_array().into_iter().flatten() {
            let name = series["name"].as_str().unwrap();
            let mut tags: Vec<(String, String)> = series["tags"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(_, v)| v.as_str().is_some_and(|s| !s.is_empty()))
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            tags.sort();
            let tags = tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
            for row in series["values"].as_array().unwrap() {
                out.insert(format!("{name}|{tags}|{}", row[0].as_i64().unwrap()));
            }
        }
        out
    }
}

/// The same key for a point read back from line protocol.
pub fn key_of(p: &wattledger::model::Point) -> String {
    let tags = p.tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    format!("{}|{tags}|{}", p.measurement, p.time_ns)
}
