//! `wattledger demo`: a whole site in one process, on loopback.
//!
//! A Bitcoin fleet of simulated miners, a GPU cluster on a reserved contract and an
//! inference cluster paid by the token ([`site`]), three agents (one per host)
//! shipping through the aggregator's InfluxDB-compatible ingest into the embedded
//! store, the aggregator computing windows, the JSON API and the web UI. The market
//! and the energy price are simulated too ([`market`]) and written into the store,
//! tagged `source=demo-sim`, for the aggregator to price windows with.
//!
//! Everything runs on one [`clock::DemoClock`]: it first replays the last day at
//! thousands of times real speed, through the same agents and ingest, so the
//! comparison has numbers for every workload within seconds of start; then it runs
//! on at `--speed`. Nothing reads the wall clock except the clock itself.

pub mod clock;
pub mod market;
pub mod site;
pub mod table;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::clock::DemoClock;
use self::market::{MarketSim, MarketSpec, PriceSchedule};
use self::site::{Paced, Site};
use crate::agent::config::AgentConfig;
use crate::agent::pipeline::ScheduledSource;
use crate::agent::Agent;
use crate::aggregate::config::AggregatorConfig;
use crate::aggregate::Aggregator;
use crate::collect::inference::{InferenceServerConfig, InferenceSource};
use crate::collect::miners::fleet::{MinerSource, PollOptions};
use crate::collect::Source;
use crate::model::schema;
use crate::model::Clock;
use crate::store::embedded::EmbeddedStore;
use crate::store::{SeriesQuery, Store};
use crate::web::AppState;

/// The store's file inside `--data`.
pub const STORE_FILE: &str = "wattledger.db";
/// The alert engine's state inside `--data`.
pub const ALERTS_FILE: &str = "alerts-state.json";
/// The API token's file inside `--data`, kept so the printed URL works across restarts.
pub const TOKEN_FILE: &str = "api-token";

/// How a demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Simulated seconds per real second once the past is replayed.
    pub speed: f64,
    /// How much of the past to replay at start.
    pub backfill: Duration,
    /// Real time a full replay takes (a shorter one, after a restart, is quicker).
    pub backfill_real: Duration,
    /// Seeds the market path and the miners' loopback block.
    pub seed: u64,
}

impl DemoOptions {
    pub fn new(listen: SocketAddr, data_dir: PathBuf, speed: f64) -> Self {
        DemoOptions {
            listen,
            data_dir,
            speed,
            backfill: Duration::from_secs(24 * 3600),
            backfill_real: Duration::from_secs(15),
            seed: 21,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{addr} is already in use (another wattledger demo or aggregator?); pick a free address with --listen, e.g. --listen 127.0.0.1:{next}")]
    PortTaken { addr: SocketAddr, next: u16 },
    #[error("cannot listen on {addr}: {source}; pick another address with --listen")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("--speed must be a positive number of simulated seconds per real second, got {0}")]
    Speed(f64),
    #[error("data folder {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("embedded store in {path}: {message}")]
    Store { path: PathBuf, message: String },
    #[error(transparent)]
    Site(#[from] site::SiteError),
    #[error("{0}")]
    Setup(String),
    /// The demo's own API did not answer the comparison.
    #[error("{url}: {message}")]
    Api { url: String, message: String },
}

/// The replay's progress for `GET /api/status`: `null` once live.
fn replay_view(clock: Arc<DemoClock>) -> crate::web::ReplayView {
    Arc::new(move || {
        if !clock.in_backfill() {
            return serde_json::Value::Null;
        }
        serde_json::json!({
            "fraction": clock.replay_fraction(),
            "from": crate::aggregate::rfc3339(clock.start_ns()),
            "to": crate::aggregate::rfc3339(clock.live_from_ns()),
            "now": crate::aggregate::rfc3339(clock.now_ns()),
        })
    })
}

/// Simulated spacing of readings: coarse while replaying the past (a day in
/// seconds), finer when live.
const BACKFILL_SPACING: Duration = Duration::from_secs(300);
const LIVE_GPU_SPACING: Duration = Duration::from_secs(15);
const LIVE_MINER_SPACING: Duration = Duration::from_secs(30);
const LIVE_INFERENCE_SPACING: Duration = Duration::from_secs(15);
/// How long before the replay the simulated market and energy price begin.
const PRICE_HEAD_START: Duration = Duration::from_secs(6 * 3600);
/// The hole in simulated time between a previous run's data and a resumed run:
/// longer than `max_gap` in [`aggregator_config`].
const RESTART_GAP: Duration = Duration::from_secs(17 * 60);
/// The agents tick this often in real time; [`Paced`] decides when to read.
const AGENT_TICK: Duration = Duration::from_millis(20);

/// A running demo.
pub struct Demo {
    addr: SocketAddr,
    token: String,
    data_dir: PathBuf,
    clock: Arc<DemoClock>,
    miner_summary: String,
    miner_count: usize,
    resumed: bool,
    /// Stops the agents; `stop_core` then stops the aggregator, the API and the price feed.
    stop_agents: watch::Sender<bool>,
    stop_core: watch::Sender<bool>,
    agents: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    server: JoinHandle<std::io::Result<()>>,
    site: Site,
}

impl Demo {
    /// Binds the address first (so a taken port fails before anything starts), then
    /// starts the store, the aggregator, the API and UI, the site and the agents.
    pub async fn start(opts: DemoOptions) -> Result<Demo, DemoError> {
        if !(opts.speed.is_finite() && opts.speed > 0.0) {
            return Err(DemoError::Speed(opts.speed));
        }
        let listener = tokio::net::TcpListener::bind(opts.listen).await.map_err(|source| {
            if source.kind() == std::io::ErrorKind::AddrInUse {
                DemoError::PortTaken { addr: opts.listen, next: opts.listen.port().wrapping_add(1).max(1024) }
            } else {
                DemoError::Listen { addr: opts.listen, source }
            }
        })?;
        let addr = listener.local_addr().map_err(|source| DemoError::Listen { addr: opts.listen, source })?;
        let data_dir = opts.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| DemoError::DataDir { path: data_dir.clone(), source })?;
        let token = load_or_create_token(&data_dir)?;

        let db = data_dir.join(STORE_FILE);
        let store: Arc<dyn Store> = Arc::new(
            EmbeddedStore::open(&db).map_err(|e| DemoError::Store { path: db.clone(), message: e.to_string() })?,
        );
        // Where simulated time starts: a day ago, or where the previous run's data
        // ends (replaying over it would interleave two runs' counters).
        let wall_now = crate::model::now_ns();
        let backfill_ns = opts.backfill.as_nanos() as i64;
        let spec = MarketSpec { seed: opts.seed, ..MarketSpec::default() };
        let previous = store
            .read(&SeriesQuery {
                measurement: schema::market::MEASUREMENT.into(),
                fields: market::SAMPLE_FIELDS.iter().map(|f| f.to_string()).collect(),
                tag_filters: vec![(schema::market::TAG_SOURCE.into(), market::SOURCE_TAG.into())],
                start_ns: wall_now - backfill_ns,
                end_ns: i64::MAX,
            })
            .await
            .map_err(|e| DemoError::Store { path: db.clone(), message: e.to_string() })?;
        let last = MarketSim::last_stored(&previous);
        let resumed = last.is_some();
        let (start_ns, mut market) = match last {
            // A hole longer than the aggregator's `max_gap` marks the restart: the
            // simulated miners' counters start over, and nothing is counted across it.
            Some(last) => (last.time_ns + RESTART_GAP.as_nanos() as i64, MarketSim::resume(spec, &last)),
            // Prices start before the replay: the aggregator's first pass looks
            // back `late_data_lookback` from the first moment.
            // Prices change on multiples of their step, so that each price holds
            // for whole ledger intervals (an interval straddling a price change
            // is computed from raw samples).
            None => {
                let step_ns = (spec.step_s * 1e9) as i64;
                let first = wall_now - backfill_ns - PRICE_HEAD_START.as_nanos() as i64;
                (wall_now - backfill_ns, MarketSim::new(spec, first.div_euclid(step_ns) * step_ns))
            }
        };
        let backfill_rate = opts.backfill.as_secs_f64() / opts.backfill_real.as_secs_f64().max(0.001);
        let clock = Arc::new(DemoClock::new(start_ns, wall_now, backfill_rate, opts.speed));
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let (stop_core, stop_rx) = watch::channel(false);
        let (stop_agents, agents_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };

        // Market and energy price first, so the first windows have prices.
        let mut background = Vec::new();
        write_prices(store.as_ref(), &mut market, &PriceSchedule::demo(), clock.now_ns()).await;
        background.push(tokio::spawn(feed_prices(store.clone(), market, clock.clone(), stop_rx.clone())));

        let cfg = aggregator_config(&db, &token)?;
        let aggregator = Arc::new(
            Aggregator::new(cfg, store.clone(), dyn_clock.clone()).map_err(|e| DemoError::Setup(e.to_string()))?,
        );
        let alerts_cfg = crate::alert::config::AlertsConfig::from_aggregator(aggregator.config(), &data_dir)
            .map_err(|e| DemoError::Setup(e.to_string()))?;
        let alerts = Arc::new(
            crate::alert::AlertEngine::new(aggregator.clone(), alerts_cfg)
                .map_err(|e| DemoError::Setup(e.to_string()))?,
        );
        let state = AppState::new(aggregator.clone())
            .map_err(|e| DemoError::Setup(e.to_string()))?
            .with_alerts(alerts.view())
            .with_idle_rule(crate::alert::config::idle_rule(alerts.rules()))
            .with_replay(replay_view(clock.clone()));
        background.push(tokio::spawn(aggregator.clone().run(stopped(stop_rx.clone()))));
        background.push(tokio::spawn(alerts.run(stopped(stop_rx.clone()))));
        let server = tokio::spawn({
            let shutdown = stopped(stop_rx.clone());
            async move { axum::serve(listener, crate::web::router(state)).with_graceful_shutdown(shutdown).await }
        });

        let mut site = Site::start(dyn_clock.clone(), opts.seed ^ u64::from(addr.port())).await?;
        let miner_summary = site.miner_summary();
        let miner_count = site.fleet.miners().len();
        let ingest = format!("http://{addr}");
        let spool = data_dir.join("spool");
        let paced = |s: Box<dyn Source>, live: Duration| -> ScheduledSource {
            ScheduledSource {
                source: Box::new(Paced::new(s, clock.clone(), BACKFILL_SPACING, live)),
                interval: AGENT_TICK,
            }
        };

        // The stock Antminers are measured at the wall through the simulated PDU, the
        // contract GPU node through its simulated BMC.
        let pdu_meters = format!(
            "[meters]\n[[meters.devices]]\nname = \"pdu-1\"\nurl = \"{}\"\nprofile = \"apc-rpdu2\"\n{}",
            site.pdu.url(),
            site.pdu_outlets
                .iter()
                .map(|(a, n)| format!("[[meters.devices.channels]]\nchannel = \"{n}\"\nminer = \"{a}\"\n"))
                .collect::<String>()
        );
        let bmc_meters = format!(
            "[meters]\n[[meters.devices]]\nname = \"bmc-gpu-node-1\"\nurl = \"{}\"\n[[meters.devices.channels]]\nchannel = \"1\"\ngpu_host = \"gpu-node-1\"\n",
            site.bmc.url()
        );
        let miners_cfg = agent_config(
            "miners-a",
            &spool,
            &ingest,
            &token,
            site::MINING,
            &format!(
                "[miners]\ntargets = [{}]\n{pdu_meters}",
                site.fleet.addrs().iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ")
            ),
        )?;
        let meters_source = |cfg: &crate::agent::config::AgentConfig| -> Result<Box<dyn Source>, DemoError> {
            let m = cfg.meters.as_ref().ok_or_else(|| DemoError::Setup("no [meters] in a demo agent".into()))?;
            Ok(Box::new(crate::collect::meters::MetersSource::new(m).map_err(|e| DemoError::Setup(e.0))?))
        };
        let pdu_source = meters_source(&miners_cfg)?;
        let miner_source = MinerSource::new(
            site.miner_targets(),
            PollOptions { timeout: Duration::from_secs(3), concurrency: 16, ..PollOptions::default() },
        );
        let contract_gpus = site.contract_gpus()?;
        let contract_cfg =
            agent_config("gpu-node-1", &spool, &ingest, &token, site::CONTRACT, &format!("[gpus]\n{bmc_meters}"))?;
        let bmc_source = meters_source(&contract_cfg)?;
        let inference_gpus = site.inference_gpus()?;
        let vllm_cfg: InferenceServerConfig =
            toml::from_str(&format!("name = \"vllm-llama\"\nurl = \"{}\"\n", site.vllm.metrics_url()))
                .map_err(|e| DemoError::Setup(e.to_string()))?;
        let inference_cfg = agent_config(
            "infer-node-1",
            &spool,
            &ingest,
            &token,
            site::INFERENCE,
            &format!("[gpus]\n[[inference]]\nname = \"{}\"\nurl = \"{}\"\n", vllm_cfg.name, vllm_cfg.url),
        )?;
        let vllm_source = InferenceSource::new(vllm_cfg).map_err(|e| DemoError::Setup(e.to_string()))?;

        let mut agents = Vec::new();
        for (cfg, sources) in [
            (
                miners_cfg,
                vec![paced(Box::new(miner_source), LIVE_MINER_SPACING), paced(pdu_source, LIVE_MINER_SPACING)],
            ),
            (contract_cfg, vec![paced(Box::new(contract_gpus), LIVE_GPU_SPACING), paced(bmc_source, LIVE_GPU_SPACING)]),
            (
                inference_cfg,
                vec![
                    paced(Box::new(inference_gpus), LIVE_GPU_SPACING),
                    paced(Box::new(vllm_source), LIVE_INFERENCE_SPACING),
                ],
            ),
        ] {
            let host = cfg.host();
            let sinks = crate::agent::sinks_from_config(&cfg).map_err(|e| DemoError::Setup(e.to_string()))?;
            let agent = Agent::with_sinks(cfg, dyn_clock.clone(), sources, sinks)
                .map_err(|e| DemoError::Setup(e.to_string()))?;
            let shutdown = stopped(agents_rx.clone());
            agents.push(tokio::spawn(async move {
                if let Err(e) = agent.run(shutdown).await {
                    tracing::error!(host, error = %e, "demo agent stopped");
                }
            }));
        }

        Ok(Demo {
            addr,
            token,
            data_dir,
            clock,
            miner_summary,
            miner_count,
            resumed,
            stop_agents,
            stop_core,
            agents,
            background,
            server,
            site,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's address with a token that works.
    pub fn url(&self) -> String {
        format!("http://{}/?token={}", self.addr, self.token)
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn clock(&self) -> &Arc<DemoClock> {
        &self.clock
    }

    /// `antminer-stock ×3, luxos ×2, …`
    /// True when this run continues the data of a previous one in `--data`.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    pub fn miner_count(&self) -> usize {
        self.miner_count
    }

    pub fn miner_summary(&self) -> &str {
        &self.miner_summary
    }

    /// Asks the demo's own API for the comparison over the last 24 h (simulated).
    pub async fn comparison(&self) -> Result<table::Comparison, DemoError> {
        let url = format!("http://{}/api/workloads", self.addr);
        let err = |message: String| DemoError::Api { url: url.clone(), message };
        let resp = reqwest::Client::new()
            .get(&url)
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(err(format!("HTTP {}", resp.status())));
        }
        resp.json().await.map_err(|e| err(e.to_string()))
    }

    /// Waits until every workload has a revenue per kWh, or `timeout` passes.
    pub async fn wait_for_comparison(&self, timeout: Duration) -> Result<table::Comparison, DemoError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let c = self.comparison().await;
            let complete = c
                .as_ref()
                .is_ok_and(|c| c.workloads.len() == 3 && c.workloads.iter().all(|w| w.revenue_usd_per_kwh.is_some()));
            if complete || tokio::time::Instant::now() >= deadline {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until the replay of the past is over and the agents have shipped it.
    pub async fn wait_for_replay(&self) {
        tokio::time::sleep(self.clock.backfill_remaining()).await;
        // The agents ship every `batch_interval`; give them two.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    /// Stops in order: agents first (they ship what they spooled while the ingest
    /// still answers), then the aggregator, the API and the simulated site. The
    /// store is closed last, with everything written.
    pub async fn stop(self) {
        let _ = self.stop_agents.send(true);
        for a in self.agents {
            let _ = a.await;
        }
        tracing::debug!("demo: agents stopped");
        let _ = self.stop_core.send(true);
        for b in self.background {
            let _ = b.await;
        }
        tracing::debug!("demo: aggregator and price feed stopped");
        match self.server.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "demo API server"),
            Err(e) => tracing::warn!(error = %e, "demo API server task"),
            Ok(Ok(())) => {}
        }
        tracing::debug!("demo: API server stopped");
        self.site.stop().await;
        tracing::debug!("demo: simulated site stopped");
    }
}

/// The aggregator as the demo runs it: one site with a PUE and the measured
/// (simulated) energy price, the simulated market from the store, three workloads.
pub fn aggregator_config(db: &Path, token: &str) -> Result<AggregatorConfig, DemoError> {
    let toml = format!(
        r#"
[store]
kind = "embedded"
path = {db:?}

[sites.{site}]
pue = {pue}
[sites.{site}.tariff]
kind = "measured"

[market]
source = "store"
source_tag = "{market_tag}"
max_age = "30m"

[[workloads]]
name = "{mining}"
model = "bitcoin_fpps"
pool_fee = {pool_fee}

[[workloads]]
name = "{contract}"
model = "ai_contract"
usd_per_gpu_hour = {gpu_hour}

[[workloads]]
name = "{inference}"
model = "ai_tokens"
usd_per_mtok_prompt = {mtok_prompt}
usd_per_mtok_generation = {mtok_gen}

[aggregator]
window = "1h"
short_window = "5m"
# The replay moves simulated time by hours per real second; windows are
# recomputed over enough of the past to cover each step.
late_data_lookback = "4h"
interval = "2s"
# Readings are 5 simulated minutes apart while the past is replayed.
max_gap = "16m"
fleet_lookback = "2h"

[api]
listen = "127.0.0.1:0"
token = "{token}"
ingest = true

[alerts]
state_file = {alerts_state:?}
# Simulated time runs thousands of times faster during the replay: evaluate often.
interval = "200ms"

# The inference GPUs idle at night (about 15 % utilisation at 03:00 UTC) while still
# drawing over 200 W; paid by the token, that power earns nothing.
[[alerts.rules]]
kind = "gpu_idle_burn"
util_below_pct = 20
for = "30m"
window = "1h"

# During the replay the agents ship every 500 ms of real time, up to 48 simulated
# minutes: judge what arrives late on hourly windows and a longer silence.
[[alerts.rules]]
kind = "unprofitable"
window = "1h"

[[alerts.rules]]
kind = "low_coverage"
window = "1h"
for = "1h"

[[alerts.rules]]
kind = "device_offline"
threshold = 8

# The agents' own telemetry runs on real time, not the demo's simulated clock.
[[alerts.rules]]
kind = "agent_silent"
enabled = false
"#,
        alerts_state = db.with_file_name(ALERTS_FILE).display().to_string(),
        db = db.display().to_string(),
        site = site::SITE,
        pue = site::PUE,
        market_tag = market::SOURCE_TAG,
        mining = site::MINING,
        contract = site::CONTRACT,
        inference = site::INFERENCE,
        pool_fee = site::POOL_FEE,
        gpu_hour = site::CONTRACT_USD_PER_GPU_HOUR,
        mtok_prompt = site::USD_PER_MTOK_PROMPT,
        mtok_gen = site::USD_PER_MTOK_GENERATION,
    );
    let cfg: AggregatorConfig = crate::config::from_str(&toml, Path::new("<demo aggregator config>"))
        .map_err(|e| DemoError::Setup(e.to_string()))?;
    cfg.validate().map_err(|e| DemoError::Setup(e.to_string()))?;
    Ok(cfg)
}

/// One host's agent config. `sources` names what the host reads (the sources
/// themselves are built by the demo, so their clocks can be pinned).
fn agent_config(
    host: &str,
    spool: &Path,
    ingest: &str,
    token: &str,
    workload: &str,
    sources: &str,
) -> Result<AgentConfig, DemoError> {
    let toml = format!(
        r#"
[agent]
site = "{site}"
host = "{host}"
spool_dir = {spool:?}
fsync = "never"
batch_interval = "500ms"
self_telemetry_interval = "30s"
shutdown_timeout = "10s"

[store]
kind = "influxdb"
api = "v2"
url = "{ingest}"
bucket = "demo"
token = "{token}"

[workloads]
default = "{workload}"

# The energy ledger, matched to the aggregator below: readings are 5 simulated
# minutes apart while the past is replayed, so 5-minute intervals and its max_gap.
[ledger]
interval = "5m"
max_gap = "16m"

{sources}
"#,
        site = site::SITE,
        spool = spool.join(host).display().to_string(),
    );
    AgentConfig::from_toml(&toml).map_err(|e| DemoError::Setup(format!("agent {host}: {e}")))
}

/// The token in `DIR/api-token`, created on first start (readable by the owner only).
fn load_or_create_token(dir: &Path) -> Result<String, DemoError> {
    let path = dir.join(TOKEN_FILE);
    let io = |source| DemoError::DataDir { path: path.clone(), source };
    match std::fs::read_to_string(&path) {
        Ok(t) if t.trim().len() >= 16 && t.trim().bytes().all(|b| b.is_ascii_alphanumeric()) => {
            return Ok(t.trim().to_string())
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    use rand::Rng;
    let token: String = rand::rng().sample_iter(rand::distr::Alphanumeric).take(32).map(char::from).collect();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    use std::io::Write;
    let mut f = opts.open(&path).map_err(io)?;
    f.write_all(token.as_bytes()).map_err(io)?;
    Ok(token)
}

/// Writes market and energy-price points up to `until_ns`.
async fn write_prices(store: &dyn Store, market: &mut MarketSim, tariff: &PriceSchedule, until_ns: i64) {
    let mut points = Vec::new();
    while market.next_ns() <= until_ns {
        let m = market.step();
        points.push(tariff.point(site::SITE, m.time_ns));
        points.push(market::sample_point(&m));
    }
    if points.is_empty() {
        return;
    }
    if let Err(e) = store.write(&points).await {
        tracing::warn!(error = %e, "demo: cannot write simulated market data");
    }
}

/// Keeps the market and energy price one step ahead of the clock.
async fn feed_prices(
    store: Arc<dyn Store>,
    mut market: MarketSim,
    clock: Arc<DemoClock>,
    mut stop: watch::Receiver<bool>,
) {
    let tariff = PriceSchedule::demo();
    loop {
        let ahead = clock.now_ns() + market.step_ns();
        write_prices(store.as_ref(), &mut market, &tariff, ahead).await;
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}
