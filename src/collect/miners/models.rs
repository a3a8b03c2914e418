//! Nominal specifications of miner models: rated hashrate and power at stock settings.
//!
//! Used twice: to estimate power for miners that do not report it (`power_source =
//! estimated`: measured hashrate × nominal J/TH), and to sanity-check readings so that a unit
//! slip is caught. Figures are the manufacturers' published nominal specifications (product
//! pages / spec sheets, ±5–10 % by the makers' own tolerance); `source` names where each
//! figure comes from. An estimate is only as good as this table: a tuned or under-volted
//! miner draws something else, which is why a measured reading (`reported` or `meter`) always
//! wins.

/// One model's nominal figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelSpec {
    /// Make as detection names it (`Antminer`, `Whatsminer`, `Avalon`, `Bitaxe`).
    pub make: &'static str,
    /// Model as detection names it, without the make (`S19 Pro`).
    pub model: &'static str,
    pub rated_ths: f64,
    pub rated_w: f64,
    pub source: &'static str,
}

impl ModelSpec {
    /// Nominal efficiency in joules per terahash.
    pub fn j_per_th(&self) -> f64 {
        self.rated_w / self.rated_ths
    }
}

const BITMAIN: &str = "Bitmain published spec (shop.bitmain.com product page)";
const MICROBT: &str = "MicroBT published spec (microbt.com product page)";
const CANAAN: &str = "Canaan published spec (canaan.io product page)";
const BITAXE: &str = "bitaxeorg hardware README / typical AxeOS stock readings";

/// The table. Keep it sorted by make, then model. A row needs a figure the maker publishes
/// for that model (named in `source`); a model without one stays out and reads as *unrated*
/// rather than carry a guessed J/TH. Not listed for that reason (checked 2026-12-02 against
/// asic-rs 0.8.6 and pyasic 0.79.0, whose model data holds chips, fans and boards per model
/// but no rated hashrate or power, and a search for the makers' pages, which found none): Antminer
/// S21+, S21+ Hydro, S23 (the S23 announced at WDMS 2025 is the S23 Hydro, reported by the
/// press at 9.5–9.7 J/TH, not an air-cooled 11 J/TH model), Avalon A15, Whatsminer M60, M63,
/// M63S, M66, M66S. Resellers' pages give S21+ Hydro 319 TH/s at 4785 W (15.0 J/TH) and the
/// A1566 185 TH/s; neither is the maker's own figure.
pub static MODELS: &[ModelSpec] = &[
    ModelSpec { make: "Antminer", model: "S19", rated_ths: 95.0, rated_w: 3250.0, source: BITMAIN },
    ModelSpec { make: "Antminer", model: "S19 Pro", rated_ths: 110.0, rated_w: 3250.0, source: BITMAIN },
    ModelSpec { make: "Antminer", model: "S19 XP", rated_ths: 140.0, rated_w: 3010.0, source: BITMAIN },
    ModelSpec { make: "Antminer", model: "S19j Pro", rated_ths: 100.0, rated_w: 3050.0, source: BITMAIN },
    ModelSpec { make: "Antminer", model: "S19k Pro", rated_ths: 120.0, rated_w: 2760.0, source: BITMAIN },
    ModelSpec { make: "Antminer", model: "S21", rated_ths: 200.0, rated_w: 3500.0, source: BITMAIN },
    ModelSpec { make: "Antminer", model: "S21 Pro", rated_ths: 234.0, rated_w: 3510.0, source: BITMAIN },
    ModelSpec { make: "Antminer", model: "S21 XP", rated_ths: 270.0, rated_w: 3645.0, source: BITMAIN },
    ModelSpec { make: "Avalon", model: "1246", rated_ths: 90.0, rated_w: 3420.0, source: CANAAN },
    ModelSpec { make: "Avalon", model: "Q", rated_ths: 90.0, rated_w: 1674.0, source: CANAAN },
    ModelSpec { make: "Bitaxe", model: "Gamma", rated_ths: 1.2, rated_w: 17.0, source: BITAXE },
    ModelSpec { make: "Bitaxe", model: "Max", rated_ths: 0.4, rated_w: 12.0, source: BITAXE },
    ModelSpec { make: "Bitaxe", model: "Supra", rated_ths: 0.6, rated_w: 13.0, source: BITAXE },
    ModelSpec { make: "Bitaxe", model: "Ultra", rated_ths: 0.5, rated_w: 12.0, source: BITAXE },
    ModelSpec { make: "Whatsminer", model: "M30S++", rated_ths: 112.0, rated_w: 3472.0, source: MICROBT },
    ModelSpec { make: "Whatsminer", model: "M50S", rated_ths: 126.0, rated_w: 3276.0, source: MICROBT },
    ModelSpec { make: "Whatsminer", model: "M60S", rated_ths: 186.0, rated_w: 3441.0, source: MICROBT },
];

/// Looks a model up by make and model (case-insensitive; `M60S_VK40` matches `M60S`).
pub fn lookup(make: &str, model: &str) -> Option<&'static ModelSpec> {
    let model = model.trim();
    MODELS.iter().find(|m| m.make.eq_ignore_ascii_case(make) && m.model.eq_ignore_ascii_case(model)).or_else(|| {
        let base = model.split(['_', ' ']).next().unwrap_or(model);
        MODELS.iter().find(|m| m.make.eq_ignore_ascii_case(make) && m.model.eq_ignore_ascii_case(base))
    })
}

/// The spec that rates a reading of `make`/`model`, or `None` (the miner is *unrated*: no
/// nominal J/TH, no estimate, no below-nominal flag). A control board names the hardware in
/// the model (ePIC `Antminer S19 XP`): then the model's own leading make is tried too.
pub fn rated(make: Option<&str>, model: Option<&str>) -> Option<&'static ModelSpec> {
    let model = model?.trim();
    if let Some(spec) = make.and_then(|mk| lookup(mk, model)) {
        return Some(spec);
    }
    let (hw_make, hw_model) = model.split_once(' ')?;
    lookup(hw_make, hw_model)
}

/// What to show for a miner's nominal efficiency: `17.5 J/TH`, or `unrated`.
pub fn nominal_label(make: Option<&str>, model: Option<&str>) -> String {
    match rated(make, model) {
        Some(s) => format!("{:.1} J/TH", s.j_per_th()),
        None => "unrated".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let s19 = lookup("antminer", "s19 pro").unwrap();
        // 3250 W / 110 TH/s = 29.545... J/TH
        assert!((s19.j_per_th() - 29.545_454).abs() < 1e-5);
        assert_eq!(lookup("Whatsminer", "M60S_VK40").unwrap().model, "M60S");
        assert!(lookup("Antminer", "S9").is_none());
        assert_eq!(rated(Some("ePIC"), Some("Antminer S19 XP")).unwrap().model, "S19 XP");
        assert!(rated(Some("unknown"), Some("Hammer D10")).is_none());
        assert_eq!(nominal_label(Some("Antminer"), Some("S21 XP")), "13.5 J/TH");
        assert_eq!(nominal_label(Some("Antminer"), Some("S23")), "unrated");
        assert_eq!(nominal_label(None, None), "unrated");
        assert!(lookup("Whatsminer", "M66S_VK30").is_none());
        for w in MODELS.windows(2) {
            assert!((w[0].make, w[0].model) < (w[1].make, w[1].model), "table not sorted at {:?}", w[1]);
        }
        for m in MODELS {
            assert!(m.rated_ths > 0.0 && m.rated_w > 0.0 && !m.source.is_empty(), "{m:?}");
        }
    }
}
