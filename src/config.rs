//! Configuration loading shared by every command: TOML, `${ENV}` expansion, secrets
//! from the environment or from `*_file` keys, unknown keys refused by name.
//!
//! Each command keeps its own config struct beside the code that uses it (with
//! `#[serde(deny_unknown_fields)]`); this module only knows how to read one.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: environment variable {var} is not set (referenced as ${{{var}}})")]
    MissingEnv { path: PathBuf, var: String },
    #[error("cannot read secret file {path}: {source}")]
    SecretFile { path: PathBuf, source: std::io::Error },
    /// A value serde accepted that the config's own checks refuse; `error.at` is the key.
    #[error("{path}: {error}")]
    Key { path: PathBuf, error: KeyError },
    #[error("{0}")]
    Invalid(String),
}

/// A config value that is wrong, with the path of its key:
/// `workloads[2].usd_per_gpu_hour`, `sites.a.pue`, `market.difficulty`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{at}: {problem}")]
pub struct KeyError {
    pub at: String,
    pub problem: String,
}

impl KeyError {
    pub fn new(at: impl Into<String>, problem: impl Into<String>) -> Self {
        KeyError { at: at.into(), problem: problem.into() }
    }

    /// The same error seen from the enclosing section: `database` within `sinks[0]` is
    /// `sinks[0].database`.
    pub fn within(self, section: &str) -> Self {
        let at = if self.at.is_empty() { section.to_owned() } else { format!("{section}.{}", self.at) };
        KeyError { at, problem: self.problem }
    }
}

/// Reads a TOML file into `T`, expanding `${VAR}` references from the environment
/// first. Error messages name the file, the line and the offending key.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let raw = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    from_str(&raw, path)
}

/// Like [`load`] for text already in memory; `origin` names it in errors.
pub fn from_str<T: DeserializeOwned>(raw: &str, origin: &Path) -> Result<T, ConfigError> {
    let expanded = expand_env(raw, |v| std::env::var(v).ok())
        .map_err(|MissingVar(var)| ConfigError::MissingEnv { path: origin.to_owned(), var })?;
    toml::from_str(&expanded).map_err(|e| ConfigError::Parse { path: origin.to_owned(), message: e.to_string() })
}

/// A `${NAME}` whose variable is not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {0} is not set (referenced as ${{{0}}})")]
pub struct MissingVar(pub String);

/// Replaces `${NAME}` with the variable's value. `$${` escapes a literal `${`.
/// Comments are expanded too, which is harmless and keeps this simple.
pub fn expand_env(raw: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, MissingVar> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix("${") {
            out.push_str("${");
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            match body.find('}') {
                Some(end) => {
                    let name = &body[..end];
                    out.push_str(&lookup(name).ok_or_else(|| MissingVar(name.to_string()))?);
                    rest = &body[end + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A secret value (token, password). Its `Debug` and `Display` never show it, so
/// it cannot leak through logs or error messages.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Resolves a secret given either inline (`token = "${TOKEN}"`) or as a file
    /// (`token_file = "/etc/wattledger/token"`); a trailing newline in the file is
    /// dropped. Both set is an error, neither is `None`.
    pub fn resolve(key: &str, inline: Option<&Secret>, file: Option<&Path>) -> Result<Option<Secret>, ConfigError> {
        match (inline, file) {
            (Some(_), Some(_)) => Err(ConfigError::Invalid(format!("set either `{key}` or `{key}_file`, not both"))),
            (Some(s), None) => Ok(Some(s.clone())),
            (None, Some(p)) => {
                let p = &credential_path(p, std::env::var_os("CREDENTIALS_DIRECTORY").as_deref().map(Path::new));
                let raw = std::fs::read_to_string(p)
                    .map_err(|source| ConfigError::SecretFile { path: p.to_owned(), source })?;
                Ok(Some(Secret(raw.trim_end_matches(['\n', '\r']).to_string())))
            }
            (None, None) => Ok(None),
        }
    }
}

/// Where secret files live on disk, root-only. The shipped systemd units pass this
/// folder to the service with `LoadCredential=wattledger:/etc/wattledger/credentials`,
/// so its `DynamicUser` reads them without any file on disk being readable by it.
pub const CREDENTIALS_DIR: &str = "/etc/wattledger/credentials";

/// The file to read for a `*_file` key. Under systemd (`$CREDENTIALS_DIRECTORY`
/// set) a file in [`CREDENTIALS_DIR`] is read from the credentials systemd handed
/// over: `wattledger_<name>` (a whole folder loaded as credential `wattledger`) or
/// `<name>` (one file loaded as credential `<name>`). Anywhere else, or when run by
/// hand (`wattledger check` over SSH as root), the path is read as written, so one
/// config works both ways.
pub fn credential_path(path: &Path, credentials_dir: Option<&Path>) -> PathBuf {
    let (Some(creds), Some(name)) = (credentials_dir, path.file_name()) else { return path.to_owned() };
    if path.parent() != Some(Path::new(CREDENTIALS_DIR)) {
        return path.to_owned();
    }
    let mut prefixed = std::ffi::OsString::from("wattledger_");
    prefixed.push(name);
    [creds.join(prefixed), creds.join(name)].into_iter().find(|p| p.exists()).unwrap_or_else(|| path.to_owned())
}

/// The names among `candidates` close to `name` (a typo, a missing suffix, a case
/// difference), closest first, at most three; for warnings such as "no data for
/// workload `btc-hostd`; close: btc-hosted".
pub fn near_misses<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let lower = name.to_lowercase();
    let mut close: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter(|c| *c != name)
        .filter_map(|c| {
            let cl = c.to_lowercase();
            let d = edit_distance(&lower, &cl);
            let near = d <= (lower.chars().count().max(cl.chars().count()) / 4).max(2)
                || (lower.len() >= 3 && cl.len() >= 3 && (cl.contains(&lower) || lower.contains(&cl)));
            near.then_some((d, c))
        })
        .collect();
    close.sort();
    close.into_iter().take(3).map(|(_, c)| c).collect()
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// A duration in a config file or on the command line that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("`{0}` is not a duration like 30s, 5m or 1h")]
    NotANumber(String),
    #[error("unknown duration unit `{unit}` in `{text}` (use ms, s, m, h or d)")]
    UnknownUnit { text: String, unit: String },
    #[error("`{0}` is not a valid duration")]
    Invalid(String),
    #[error("`{0}` is too long: a duration is at most 100 years ({MAX_DURATION_S}s)")]
    TooLong(String),
}

/// Parses durations written as `30s`, `1m`, `1h`, `500ms`, `2d` in config files.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, DurationError> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| DurationError::NotANumber(s.to_string()))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        other => return Err(DurationError::UnknownUnit { text: s.to_string(), unit: other.to_string() }),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(DurationError::Invalid(s.to_string()));
    }
    // Times are i64 nanoseconds (until 2262), so a longer duration cannot be
    // added to one; refuse it here rather than overflow (or panic) later.
    if secs > MAX_DURATION_S {
        return Err(DurationError::TooLong(s.to_string()));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// The longest duration a config may give: 100 years of 365.25 days.
pub const MAX_DURATION_S: f64 = 100.0 * 365.25 * 86_400.0;

/// Serde helper: `#[serde(with = "crate::config::duration")]` for `Duration` fields
/// written as strings like `30s`.
pub mod duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}s", v.as_secs_f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_env_and_escapes() {
        let got = expand_env("a=${X} b=$${X} c=$y", |v| (v == "X").then(|| "1".to_string())).unwrap();
        assert_eq!(got, "a=1 b=${X} c=$y");
        assert_eq!(expand_env("${NOPE}", |_| None), Err(MissingVar("NOPE".to_string())));
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
    }

    #[test]
    fn unknown_keys_are_named() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct C {
            a: u32,
        }
        let err = from_str::<C>("a = 1\nbogus = 2\n", Path::new("x.toml")).unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
        assert!(err.contains("x.toml"), "{err}");
    }

    #[test]
    fn secret_files_come_from_systemd_credentials_when_handed_over() {
        let creds = tempfile::tempdir().unwrap();
        let in_dir = Path::new(CREDENTIALS_DIR).join("ingest-token");
        // Run by hand: the path as written.
        assert_eq!(credential_path(&in_dir, None), in_dir);
        // A folder credential, then a single-file one; elsewhere, untouched.
        std::fs::write(creds.path().join("ingest-token"), "b").unwrap();
        assert_eq!(credential_path(&in_dir, Some(creds.path())), creds.path().join("ingest-token"));
        std::fs::write(creds.path().join("wattledger_ingest-token"), "a").unwrap();
        assert_eq!(credential_path(&in_dir, Some(creds.path())), creds.path().join("wattledger_ingest-token"));
        let other = Path::new("/srv/token");
        assert_eq!(credential_path(other, Some(creds.path())), other);
        // Not handed over: the original path, so the error names the real file.
        let missing = Path::new(CREDENTIALS_DIR).join("nope");
        assert_eq!(credential_path(&missing, Some(creds.path())), missing);
    }

    #[test]
    fn near_misses_name_typos_and_suffixes() {
        let seen = ["btc-hosted", "ai-contract-acme", "btc-fpps", "gpu"];
        assert_eq!(near_misses("btc-hostd", seen), ["btc-hosted"]);
        assert_eq!(near_misses("ai-contract", seen), ["ai-contract-acme"]);
        assert_eq!(near_misses("BTC-FPPS", seen), ["btc-fpps"]);
        assert!(near_misses("inference", seen).is_empty());
        assert!(near_misses("btc-hosted", seen).iter().all(|c| *c != "btc-hosted"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap().as_secs(), 30);
        assert_eq!(parse_duration("1h").unwrap().as_secs(), 3600);
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        assert!(
            matches!(parse_duration("5 parsecs"), Err(DurationError::UnknownUnit { unit, .. }) if unit == "parsecs")
        );
        assert_eq!(
            parse_duration("200y").unwrap_err().to_string(),
            "unknown duration unit `y` in `200y` (use ms, s, m, h or d)"
        );
        assert!(matches!(parse_duration("40000d"), Err(DurationError::TooLong(_))));
    }
}
