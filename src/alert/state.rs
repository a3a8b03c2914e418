//! Alert states and their transitions: inactive → pending → firing → resolved.
//!
//! Pure: [`Book::apply`] takes one rule's observations at one instant and moves
//! each alert on; time is always passed in, so the unit tests drive it with a
//! manual clock. The book is what the state file holds: besides each alert's
//! state it records what each sink has been told, so a restart neither loses a
//! firing alert nor notifies it again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::Rule;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    Firing,
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Firing => "firing",
            State::Resolved => "resolved",
        }
    }
}

/// What an evaluator measured for one subject (a workload, a device, a host).
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// `site`, `workload`, `device`, `host` where they apply.
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    /// What the value covers: `5m window ending 2026-11-26T14:05:00Z`.
    pub window: String,
    /// A sentence about the subject, the value follows it in the summary.
    pub what: String,
}

/// One alert: a rule and a subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub alertname: String,
    pub kind: String,
    #[serde(default)]
    pub severity: String,
    pub labels: BTreeMap<String, String>,
    pub state: State,
    /// When the condition first held (pending began).
    pub active_since_ns: i64,
    pub firing_since_ns: Option<i64>,
    pub resolved_ns: Option<i64>,
    /// When the clear condition began to hold while firing (`keep_firing_for`).
    pub clear_since_ns: Option<i64>,
    pub value: f64,
    pub threshold: f64,
    pub unit: String,
    pub window: String,
    pub summary: String,
    /// Alertmanager: when the current firing state was last accepted; whether
    /// the resolve was.
    #[serde(default)]
    pub am_sent_ns: Option<i64>,
    #[serde(default)]
    pub am_resolved_sent: bool,
    /// Webhook: the last state it accepted.
    #[serde(default)]
    pub webhook_sent: Option<State>,
}

impl Alert {
    /// Labels as sent: the subject's plus `alertname` and `severity`.
    pub fn key(alertname: &str, labels: &BTreeMap<String, String>) -> String {
        let mut k = alertname.to_string();
        for (n, v) in labels {
            k.push_str(&format!("\u{1f}{n}={v}"));
        }
        k
    }
}

/// A change worth recording (an `alert` point, a log line).
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub key: String,
    pub to: State,
}

/// Every alert that is pending, firing, or resolved and not yet delivered;
/// plus recent history and each workload's first data (for `low_coverage`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Book {
    pub alerts: BTreeMap<String, Alert>,
    pub history: Vec<Alert>,
    #[serde(default)]
    pub first_data_ns: BTreeMap<String, i64>,
}

/// How an evaluator treats a subject it did not observe this time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// No data resolves the alert (a workload without windows).
    Resolves,
    /// The alert stays as it is (a device that stopped reporting stays offline).
    Keeps,
}

impl Book {
    /// Moves every alert of `rule` on at `now_ns`, given what was observed.
    pub fn apply(
        &mut self,
        rule: &Rule,
        observations: &[Observation],
        missing: Missing,
        now_ns: i64,
        history_len: usize,
    ) -> Vec<Transition> {
        let for_ns = (rule.for_s * 1e9) as i64;
        let keep_ns = (rule.keep_firing_for_s * 1e9) as i64;
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for o in observations {
            let key = Alert::key(&rule.name, &o.labels);
            seen.insert(key.clone());
            let breached = rule.breached(o.value);
            let cleared = rule.cleared(o.value);
            let summary = format!(
                "{}: {} {} (threshold {} {}, {})",
                o.what,
                fmt_num(o.value),
                rule.unit,
                fmt_num(rule.threshold),
                rule.unit,
                o.window
            );
            let live = self.alerts.get(&key).filter(|a| a.state != State::Resolved).is_some();
            if !live {
                if !breached {
                    continue;
                }
                let mut a = Alert {
                    alertname: rule.name.clone(),
                    kind: rule.kind.as_str().to_string(),
                    severity: rule.severity.clone(),
                    labels: o.labels.clone(),
                    state: State::Pending,
                    active_since_ns: now_ns,
                    firing_since_ns: None,
                    resolved_ns: None,
                    clear_since_ns: None,
                    value: o.value,
                    threshold: rule.threshold,
                    unit: rule.unit.clone(),
                    window: o.window.clone(),
                    summary,
                    am_sent_ns: None,
                    am_resolved_sent: false,
                    webhook_sent: None,
                };
                // A resolved alert still waiting for delivery of its resolve is
                // replaced: the sinks learn the new firing instead.
                out.push(Transition { key: key.clone(), to: State::Pending });
                if for_ns == 0 {
                    a.state = State::Firing;
                    a.firing_since_ns = Some(now_ns);
                    out.push(Transition { key: key.clone(), to: State::Firing });
                }
                self.alerts.insert(key, a);
                continue;
            }
            let a = self.alerts.get_mut(&key).expect("live alert");
            a.value = o.value;
            a.window = o.window.clone();
            a.summary = summary;
            a.threshold = rule.threshold;
            match a.state {
                State::Pending if breached => {
                    if now_ns - a.active_since_ns >= for_ns {
                        a.state = State::Firing;
                        a.firing_since_ns = Some(now_ns);
                        out.push(Transition { key, to: State::Firing });
                    }
                }
                State::Pending => {
                    self.alerts.remove(&key);
                }
                State::Firing if cleared => {
                    let since = *a.clear_since_ns.get_or_insert(now_ns);
                    if now_ns - since >= keep_ns {
                        resolve(a, now_ns);
                        out.push(Transition { key, to: State::Resolved });
                    }
                }
                State::Firing => a.clear_since_ns = None,
                State::Resolved => unreachable!("filtered above"),
            }
        }
        // Subjects of this rule that were not observed.
        let unseen: Vec<String> = self
            .alerts
            .iter()
            .filter(|(k, a)| a.alertname == rule.name && a.state != State::Resolved && !seen.contains(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for key in unseen {
            let a = self.alerts.get_mut(&key).expect("listed");
            match (a.state, missing) {
                (State::Pending, _) => {
                    self.alerts.remove(&key);
                }
                (State::Firing, Missing::Resolves) => {
                    let since = *a.clear_since_ns.get_or_insert(now_ns);
                    if now_ns - since >= keep_ns {
                        a.summary = format!("{} (no data since)", a.summary);
                        resolve(a, now_ns);
                        out.push(Transition { key, to: State::Resolved });
                    }
                }
                _ => {}
            }
        }
        for t in &out {
            if t.to == State::Resolved {
                if let Some(a) = self.alerts.get(&t.key) {
                    self.history.insert(0, a.clone());
                }
            }
        }
        self.history.truncate(history_len);
        out
    }

    /// Drops resolved alerts that every configured sink has been told about.
    pub fn forget_delivered(&mut self, alertmanager: bool, webhook: bool) {
        self.alerts.retain(|_, a| {
            a.state != State::Resolved
                || (alertmanager && !a.am_resolved_sent)
                || (webhook && a.webhook_sent != Some(State::Resolved))
        });
    }

    /// Removes the alerts of rules no longer configured (renamed, disabled).
    pub fn retain_rules(&mut self, names: &[&str]) {
        self.alerts.retain(|_, a| names.contains(&a.alertname.as_str()));
    }
}

fn resolve(a: &mut Alert, now_ns: i64) {
    a.state = State::Resolved;
    a.resolved_ns = Some(now_ns);
    a.clear_since_ns = None;
    a.am_resolved_sent = false;
}

/// A number for a sentence: at most 3 decimals, no trailing zeros.
pub fn fmt_num(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::config::{Kind, Rule};

    const S: i64 = 1_000_000_000;

    fn obs(device: &str, value: f64) -> Observation {
        Observation {
            labels: [("device".to_string(), device.to_string())].into(),
            value,
            window: "10m".into(),
            what: format!("GPU {device} idle"),
        }
    }

    fn idle_rule(for_s: f64) -> Rule {
        let mut r = Rule::from_default(Kind::GpuIdleBurn.default_rule());
        r.for_s = for_s;
        r
    }

    #[test]
    fn pending_then_firing_after_for_then_resolved() {
        let rule = idle_rule(300.0);
        let mut b = Book::default();
        let step = |b: &mut Book, t: i64, v: f64| b.apply(&rule, &[obs("g0", v)], Missing::Resolves, t * S, 10);
        assert!(step(&mut b, 0, 100.0).is_empty(), "below threshold: inactive");
        assert_eq!(
            step(&mut b, 60, 200.0),
            vec![Transition { key: Alert::key("gpu_idle_burn", &obs("g0", 0.0).labels), to: State::Pending }]
        );
        assert!(step(&mut b, 300, 200.0).is_empty(), "240 s pending < for 300 s");
        let t = step(&mut b, 360, 210.0);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].to, State::Firing);
        let a = b.alerts.values().next().unwrap();
        assert_eq!((a.active_since_ns, a.firing_since_ns), (60 * S, Some(360 * S)));
        assert!(a.summary.contains("210 W") && a.summary.contains("threshold 150 W"), "{}", a.summary);
        let t = step(&mut b, 420, 100.0);
        assert_eq!(t[0].to, State::Resolved);
        assert_eq!(b.history.len(), 1);
        b.forget_delivered(false, false);
        assert!(b.alerts.is_empty());
    }

    #[test]
    fn flapping_input_never_fires_within_for() {
        let rule = idle_rule(300.0);
        let mut b = Book::default();
        let mut firing = 0;
        for i in 0..60 {
            let v = if i % 2 == 0 { 200.0 } else { 100.0 };
            firing += b
                .apply(&rule, &[obs("g0", v)], Missing::Resolves, i * 60 * S, 10)
                .iter()
                .filter(|t| t.to == State::Firing)
                .count();
        }
        assert_eq!(firing, 0);
    }

    #[test]
    fn hysteresis_and_keep_firing_for_hold_a_firing_alert() {
        let mut rule = Rule::from_default(Kind::LowCoverage.default_rule());
        rule.for_s = 0.0;
        rule.keep_firing_for_s = 120.0;
        let mut b = Book::default();
        let mut fired = 0;
        let mut resolved = 0;
        // 0.85 fires; 0.92 is above the threshold but below clear (0.95): still firing;
        // 0.96 at 180 s clears, but keep_firing_for holds it until 300 s.
        for (t, v) in [(0, 0.85), (60, 0.92), (120, 0.85), (180, 0.96), (240, 0.97), (300, 0.97), (360, 0.97)] {
            for tr in b.apply(&rule, &[obs("w", v)], Missing::Resolves, t * S, 10) {
                fired += (tr.to == State::Firing) as usize;
                if tr.to == State::Resolved {
                    resolved += 1;
                    assert_eq!(t, 300);
                }
            }
        }
        assert_eq!((fired, resolved), (1, 1));
    }

    #[test]
    fn missing_data_resolves_or_keeps_by_kind() {
        let rule = idle_rule(0.0);
        let mut b = Book::default();
        assert_eq!(b.apply(&rule, &[obs("g0", 500.0)], Missing::Keeps, 0, 10)[0].to, State::Pending);
        assert!(b.apply(&rule, &[], Missing::Keeps, 60 * S, 10).is_empty());
        assert_eq!(b.alerts.values().next().unwrap().state, State::Firing);
        assert_eq!(b.apply(&rule, &[], Missing::Resolves, 120 * S, 10)[0].to, State::Resolved);
    }

    #[test]
    fn the_book_survives_a_round_trip_with_what_was_sent() {
        let rule = idle_rule(0.0);
        let mut b = Book::default();
        b.apply(&rule, &[obs("g0", 500.0)], Missing::Keeps, 0, 10);
        b.alerts.values_mut().next().unwrap().am_sent_ns = Some(5);
        let text = serde_json::to_string(&b).unwrap();
        let back: Book = serde_json::from_str(&text).unwrap();
        assert_eq!(back, b);
        assert_eq!(fmt_num(0.1 + 0.2), "0.3");
        assert_eq!(fmt_num(-0.0001), "0");
    }
}
