//! Helpers shared by the integration tests that talk to the real test servers.
#![allow(dead_code)]

/// The URL of a test server from the environment; fails the test (never skips it)
/// with the command that starts the servers when it is missing.
pub fn server_url(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: this test needs the real test servers. Start them with \
             `eval \"$(bash .ci/servers.sh start)\"` (or `source /work/test-servers.env` where they already run)"
        )
    })
}

/// A database name no other test uses.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}_{:08x}", std::process::id(), rand::random::<u32>())
}

/// Runs one InfluxQL statement that changes something (POST /query).
pub async fn influxql_post(url: &str, q: &str) -> String {
    let resp = reqwest::Client::new()
        .post(format!("{url}/query"))
        .form(&[("q", q)])
        .send()
        .await
        .unwrap_or_else(|e| panic!("cannot reach InfluxDB at {url}: {e}"));
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert!(status.is_success() && !body.contains("\"error\""), "{q}: HTTP {status} {body}");
    body
}

/// Runs a read-only InfluxQL query (GET /query, epoch=ns) and returns the JSON.
pub async fn influxql_get(url: &str, db: &str, q: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{url}/query"))
        .query(&[("db", db), ("q", q), ("epoch", "ns")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A fresh database on the shared influxd, dropped again when this goes out of scope.
pub struct TestDb {
    pub url: String,
    pub name: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let url = server_url("WATTLEDGER_TEST_INFLUXDB_URL");
        let name = unique_name("wl_test");
        influxql_post(&url, &format!("CREATE DATABASE \"{name}\"")).await;
        TestDb { url, name }
    }

    /// A `[store]` table for this database, v1 API.
    pub fn store_toml(&self) -> String {
        format!("kind = \"influxdb\"\nurl = \"{}\"\napi = \"v1\"\ndatabase = \"{}\"\n", self.url, self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let _ = reqwest::Client::new()
                    .post(format!("{url}/query"))
                    .form(&[("q", format!("DROP DATABASE \"{name}\""))])
                    .send()
                    .await;
            });
        })
        .join();
    }
}

/// Parses a `[store]` table given as TOML text.
pub fn store_config(toml_text: &str) -> wattledger::store::StoreConfig {
    toml::from_str(toml_text).unwrap_or_else(|e| panic!("bad test config: {e}\n{toml_text}"))
}
