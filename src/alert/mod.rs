//! The alert engine: rules over completed windows and the latest readings, states
//! that do not flap, delivery to Alertmanager and a webhook, and the views
//! (`GET /api/alerts`, the page's panel, `wattledger alerts`).
//!
//! Layering: above [`crate::aggregate`] (it reads through an [`Aggregator`]),
//! beside [`crate::web`] (which gets its state through `AlertEngine::view`); nothing
//! below imports it. Parts:
//! [`config`] (`[alerts]`, the defaults of every kind), [`eval`] (what each kind
//! measures), [`state`] (the state machine and the state file's contents) and
//! [`deliver`] (the sinks).
//!
//! Two loops run beside the aggregator's: evaluation every `interval`, and
//! delivery, which only reads and marks the book, so a slow or dead sink never
//! holds up windows or evaluation.

pub mod config;
pub mod deliver;
pub mod eval;
pub mod state;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use self::config::{AlertsConfig, Rule};
use self::deliver::SinkStats;
use self::state::{Alert, Book, State, Transition};
use crate::aggregate::{rfc3339, Aggregator};
use crate::model::schema::{self, alert as sch, alert_delivery as dl};
use crate::model::Point;

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Config(#[from] crate::aggregate::config::KeyError),
    #[error("[alerts] webhook_secret_file {path}: {message}")]
    Secret { path: PathBuf, message: String },
    #[error("HTTP client: {0}")]
    Client(String),
    #[error("alert state file {path}: {message}")]
    StateFile { path: PathBuf, message: String },
}

/// Reads the state file; a missing file is an empty book.
pub fn load_book(path: &Path) -> Result<Book, AlertError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| AlertError::StateFile {
            path: path.into(),
            message: format!(
                "{e}; it is not a wattledger alert state. Move it aside to start with no alerts (firing ones are then notified again)"
            ),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Book::default()),
        Err(e) => Err(AlertError::StateFile { path: path.into(), message: e.to_string() }),
    }
}

/// Writes the state file atomically (a temporary file renamed over it).
fn save_book(path: &Path, book: &Book) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(book).expect("plain JSON"))?;
    std::fs::rename(&tmp, path)
}

/// One alert as the API, the page and the terminal show it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    pub alertname: String,
    pub kind: String,
    pub severity: String,
    pub state: State,
    pub labels: std::collections::BTreeMap<String, String>,
    pub summary: String,
    pub value: f64,
    pub threshold: f64,
    pub unit: String,
    pub window: String,
    /// Firing since (pending since, for a pending alert).
    pub since: String,
    pub resolved_at: Option<String>,
}

impl From<&Alert> for AlertView {
    fn from(a: &Alert) -> Self {
        AlertView {
            alertname: a.alertname.clone(),
            kind: a.kind.clone(),
            severity: a.severity.clone(),
            state: a.state,
            labels: a.labels.clone(),
            summary: a.summary.clone(),
            value: a.value,
            threshold: a.threshold,
            unit: a.unit.clone(),
            window: a.window.clone(),
            since: rfc3339(a.firing_since_ns.unwrap_or(a.active_since_ns)),
            resolved_at: a.resolved_ns.map(rfc3339),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Delivery {
    pub alertmanager: SinkStats,
    pub webhook: SinkStats,
}

/// `GET /api/alerts`.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub enabled: bool,
    pub firing: Vec<AlertView>,
    pub pending: Vec<AlertView>,
    pub history: Vec<AlertView>,
    pub notes: Vec<String>,
    pub delivery: Delivery,
    pub evaluated_at: Option<String>,
    pub evaluation_errors: u64,
}

impl Snapshot {
    /// The views of a book: firing first (oldest first), then pending.
    pub fn of(book: &Book, enabled: bool) -> Snapshot {
        let mut firing: Vec<&Alert> = book.alerts.values().filter(|a| a.state == State::Firing).collect();
        firing.sort_by_key(|a| a.firing_since_ns);
        let mut pending: Vec<&Alert> = book.alerts.values().filter(|a| a.state == State::Pending).collect();
        pending.sort_by_key(|a| a.active_since_ns);
        Snapshot {
            enabled,
            firing: firing.into_iter().map(AlertView::from).collect(),
            pending: pending.into_iter().map(AlertView::from).collect(),
            history: book.history.iter().map(AlertView::from).collect(),
            notes: vec![],
            delivery: Delivery::default(),
            evaluated_at: None,
            evaluation_errors: 0,
        }
    }
}

struct Inner {
    book: Book,
    notes: Vec<String>,
    delivery: Delivery,
    evaluated_at_ns: Option<i64>,
    evaluation_errors: u64,
    save_failed: bool,
}

/// The engine. Build it with [`AlertEngine::new`], run it with [`AlertEngine::run`].
pub struct AlertEngine {
    agg: Arc<Aggregator>,
    cfg: AlertsConfig,
    rules: Vec<Rule>,
    page_url: String,
    webhook_secret: Option<Vec<u8>>,
    client: reqwest::Client,
    inner: Mutex<Inner>,
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for AlertEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertEngine").field("rules", &self.rules.len()).finish()
    }
}

impl AlertEngine {
    /// Reads the webhook secret and the state file (firing alerts carry on).
    pub fn new(agg: Arc<Aggregator>, cfg: AlertsConfig) -> Result<AlertEngine, AlertError> {
        let rules = cfg.rules(agg.config())?;
        let webhook_secret = match &cfg.webhook_secret_file {
            None => None,
            Some(p) => {
                let secret_err = |message: String| AlertError::Secret { path: p.clone(), message };
                let s = std::fs::read(p).map_err(|e| secret_err(e.to_string()))?;
                let s = s.trim_ascii().to_vec();
                if s.is_empty() {
                    return Err(secret_err("is empty; put a long random secret in it".into()));
                }
                Some(s)
            }
        };
        let mut book = load_book(&cfg.state_file)?;
        let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
        book.retain_rules(&names);
        let page_url = cfg.page_url.clone().unwrap_or_else(|| format!("http://{}/", agg.config().api.listen));
        let client =
            reqwest::Client::builder().timeout(cfg.timeout).build().map_err(|e| AlertError::Client(e.to_string()))?;
        let delivery = Delivery {
            alertmanager: SinkStats { configured: !cfg.alertmanager_url.urls().is_empty(), ..Default::default() },
            webhook: SinkStats { configured: cfg.webhook_url.is_some(), ..Default::default() },
        };
        Ok(AlertEngine {
            agg,
            rules,
            page_url,
            webhook_secret,
            client,
            inner: Mutex::new(Inner {
                book,
                notes: vec![],
                delivery,
                evaluated_at_ns: None,
                evaluation_errors: 0,
                save_failed: false,
            }),
            cfg,
            wake: tokio::sync::Notify::new(),
        })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state as `GET /api/alerts` serves it, for `web::AppState::with_alerts`.
    pub fn view(self: &Arc<Self>) -> Arc<dyn Fn() -> serde_json::Value + Send + Sync> {
        let me = self.clone();
        Arc::new(move || serde_json::to_value(me.snapshot()).expect("plain JSON"))
    }

    /// The current state.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        let mut s = Snapshot::of(&inner.book, self.cfg.enabled);
        s.notes = inner.notes.clone();
        s.delivery = inner.delivery.clone();
        s.evaluated_at = inner.evaluated_at_ns.map(rfc3339);
        s.evaluation_errors = inner.evaluation_errors;
        s
    }

    fn persist(&self, inner: &mut Inner) {
        let sinks = (!self.cfg.alertmanager_url.urls().is_empty(), self.cfg.webhook_url.is_some());
        inner.book.forget_delivered(sinks.0, sinks.1);
        match save_book(&self.cfg.state_file, &inner.book) {
            Ok(()) => inner.save_failed = false,
            Err(e) if !inner.save_failed => {
                inner.save_failed = true;
                tracing::error!(path = %self.cfg.state_file.display(), error = %e, "cannot write the alert state file; a restart would forget alerts");
            }
            Err(_) => {}
        }
    }

    /// Evaluates every rule at `now_ns`, records the changes (state file, `alert`
    /// points) and wakes delivery. A rule whose data cannot be read keeps its
    /// alerts as they are.
    pub async fn evaluate(&self, now_ns: i64) -> Vec<Transition> {
        let mut first_data = self.lock().book.first_data_ns.clone();
        let mut transitions = Vec::new();
        let mut notes = Vec::new();
        let mut errors = 0;
        for rule in &self.rules {
            match eval::evaluate(&self.agg, rule, now_ns, &mut first_data).await {
                Ok(found) => {
                    notes.extend(found.notes);
                    let mut inner = self.lock();
                    inner.book.first_data_ns = first_data.clone();
                    transitions.extend(inner.book.apply(
                        rule,
                        &found.observations,
                        found.missing,
                        now_ns,
                        self.cfg.history,
                    ));
                }
                Err(e) => {
                    errors += 1;
                    tracing::warn!(rule = %rule.name, error = %e, "alert rule not evaluated; its alerts stay as they are");
                }
            }
        }
        let points: Vec<Point> = {
            let mut inner = self.lock();
            inner.notes = notes;
            inner.evaluated_at_ns = Some(now_ns);
            inner.evaluation_errors += errors;
            let mut points: Vec<Point> = transitions
                .iter()
                .filter_map(|t| {
                    let a =
                        inner.book.alerts.get(&t.key).or_else(|| {
                            inner.book.history.iter().find(|h| Alert::key(&h.alertname, &h.labels) == t.key)
                        })?;
                    Some(alert_point(a, t.to, now_ns))
                })
                .collect();
            for (sink, stats) in [("alertmanager", &inner.delivery.alertmanager), ("webhook", &inner.delivery.webhook)]
            {
                if stats.configured {
                    points.push(
                        Point::new(dl::MEASUREMENT, now_ns)
                            .tag(dl::TAG_SINK, sink)
                            .field(dl::SENT, stats.sent)
                            .field(dl::FAILURES, stats.failures)
                            .field(dl::DOWN, stats.down_since.is_some()),
                    );
                }
            }
            self.persist(&mut inner);
            points
        };
        for t in &transitions {
            tracing::info!(alert = %t.key.replace('\u{1f}', " "), state = t.to.as_str(), "alert");
        }
        if !points.is_empty() {
            if let Err(e) = self.agg.store().write(&points).await {
                tracing::warn!(error = %e, "cannot write alert points to the store");
            }
        }
        self.wake.notify_one();
        transitions
    }

    /// One delivery attempt for each sink that is due; returns when done.
    pub async fn deliver_once(&self) {
        let now_ns = self.agg.now_ns();
        let resend_ns = self.cfg.resend_interval.as_nanos() as i64;
        let max_backoff = self.cfg.resend_interval.min(Duration::from_secs(60));
        let am_urls = self.cfg.alertmanager_url.urls();
        if !am_urls.is_empty() {
            let batch: Option<(serde_json::Value, Vec<(String, State)>)> = {
                let inner = self.lock();
                let alerts: Vec<&Alert> = inner
                    .book
                    .alerts
                    .values()
                    .filter(|a| a.state == State::Firing || (a.state == State::Resolved && !a.am_resolved_sent))
                    .collect();
                let due = alerts.iter().any(|a| match a.state {
                    State::Firing => a.am_sent_ns.is_none_or(|t| now_ns - t >= resend_ns),
                    _ => true,
                });
                (due && inner.delivery.alertmanager.due()).then(|| {
                    let keys = alerts.iter().map(|a| (Alert::key(&a.alertname, &a.labels), a.state)).collect();
                    (deliver::alertmanager_body(&alerts, &self.page_url, now_ns, self.cfg.resend_interval), keys)
                })
            };
            if let Some((body, keys)) = batch {
                let result = deliver::post_alertmanager(&self.client, &am_urls, &body).await;
                let mut inner = self.lock();
                match result {
                    Ok(()) => {
                        inner.delivery.alertmanager.ok("alertmanager");
                        for (key, state) in keys {
                            if let Some(a) = inner.book.alerts.get_mut(&key).filter(|a| a.state == state) {
                                match state {
                                    State::Resolved => a.am_resolved_sent = true,
                                    _ => a.am_sent_ns = Some(now_ns),
                                }
                            }
                        }
                        self.persist(&mut inner);
                    }
                    Err(e) => inner.delivery.alertmanager.failed("alertmanager", e, max_backoff),
                }
            }
        }
        if let (Some(url), Some(secret)) = (&self.cfg.webhook_url, &self.webhook_secret) {
            loop {
                let next: Option<(String, State, Vec<u8>)> = {
                    let inner = self.lock();
                    if !inner.delivery.webhook.due() {
                        None
                    } else {
                        let mut due: Vec<&Alert> = inner
                            .book
                            .alerts
                            .values()
                            .filter(|a| a.state != State::Pending && a.webhook_sent != Some(a.state))
                            .collect();
                        due.sort_by_key(|a| a.resolved_ns.or(a.firing_since_ns));
                        due.first().map(|a| {
                            (Alert::key(&a.alertname, &a.labels), a.state, deliver::webhook_body(a, &self.page_url))
                        })
                    }
                };
                let Some((key, state, body)) = next else { break };
                let result = deliver::post_webhook(&self.client, url, secret, body).await;
                let mut inner = self.lock();
                match result {
                    Ok(()) => {
                        inner.delivery.webhook.ok("webhook");
                        if let Some(a) = inner.book.alerts.get_mut(&key).filter(|a| a.state == state) {
                            a.webhook_sent = Some(state);
                        }
                        self.persist(&mut inner);
                    }
                    Err(e) => {
                        inner.delivery.webhook.failed("webhook", e, max_backoff);
                        break;
                    }
                }
            }
        }
    }

    /// Evaluates every `interval` and delivers whenever something is due, until
    /// `shutdown` resolves. The two loops are independent tasks.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()> + Send + 'static) {
        if !self.cfg.enabled {
            return;
        }
        let interval = self.cfg.interval.unwrap_or(self.agg.config().aggregator.interval);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let deliverer = tokio::spawn({
            let me = self.clone();
            let mut stop = stop_rx;
            async move {
                loop {
                    me.deliver_once().await;
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = me.wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
        });
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {
                    let now = self.agg.now_ns();
                    self.evaluate(now).await;
                }
            }
        }
        let _ = stop_tx.send(true);
        let _ = deliverer.await;
    }
}

/// The `alert` point of a change.
pub fn alert_point(a: &Alert, to: State, time_ns: i64) -> Point {
    let mut p = Point::new(sch::MEASUREMENT, time_ns)
        .tag(sch::TAG_ALERTNAME, &a.alertname)
        .tag(sch::TAG_SEVERITY, &a.severity)
        .tag(sch::TAG_STATE, to.as_str());
    for (k, key) in [
        (schema::TAG_SITE, "site"),
        (schema::TAG_WORKLOAD, "workload"),
        (schema::TAG_HOST, "host"),
        (sch::TAG_DEVICE, "device"),
    ] {
        if let Some(v) = a.labels.get(key) {
            p = p.tag(k, v);
        }
    }
    p.field(sch::VALUE, a.value).field(sch::THRESHOLD, a.threshold).field(sch::SUMMARY, a.summary.as_str())
}
