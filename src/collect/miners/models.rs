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
/// Current-generation figures: the makers' launch announcements and product pages, entered
/// as rated hashrate and rated J/TH (power = hashrate × J/TH, as the makers state it).
const BITMAIN_2024: &str = "Bitmain published spec (S21+ / S21+ Hydro launch, 2024: TH/s and J/TH)";
const BITMAIN_2025: &str = "Bitmain published spec (S23 launch, World Digital Mining Summit 2025: TH/s and J/TH)";
const MICROBT_M6X: &str = "MicroBT published spec (M60 series launch, 2023: TH/s and J/TH)";
const CANAAN_A15: &str = "Canaan published spec (A15 series launch, 2024: TH/s and J/TH)";
const BITAXE: &str = "bitaxeorg hardware README / typical AxeOS stock readings";

/// The table. Keep it sorted by make, then model.
pub static MODELS: &[ModelSpec] = &[
    ModelSpec { make: "Antminer", model: "S19", rated_ths: 95.0, rated_w: 3250.0, source: BITMAIN },
    ModelSpec { make: "Antminer", model: "S19 Pro", rated_ths: 110.0, rated_w: 3250.0, source: BITMAIN },
    ModelSpec { make: "Antminer", model: "S19 XP", rated_ths: 140.0, rated_w: 3010.0, source: BITMAIN },
    ModelSpec { make: "Antminer", model: "S19j Pro", rated_ths: 100.0, rated_w: 3050.0, source: BITMAIN },
    ModelSpec { make: "Antminer", model: "S19k Pro", rated_ths: 120.0, rated_w: 2760.0, source: BITMAIN },
    ModelSpec { make: "Antminer", model: "S21", rated_ths: 200.0, rated_w: 3500.0, source: BITMAIN },
    ModelSpec { make: "Antminer", model: "S21 Pro", rated_ths: 234.0, rated_w: 3510.0, source: BITMAIN },
    ModelSpec { make: "Antminer", model: "S21 XP", rated_ths: 270.0, rated_w: 3645.0, source: BITMAIN },
    ModelSpec { make: "Antminer", model: "S21+", rated_ths: 216.0, rated_w: 216.0 * 16.5, source: BITMAIN_2024 },
    ModelSpec { make: "Antminer", model: "S21+ Hydro", rated_ths: 319.0, rated_w: 319.0 * 16.0, source: BITMAIN_2024 },
    ModelSpec { make: "Antminer", model: "S23", rated_ths: 318.0, rated_w: 318.0 * 11.0, source: BITMAIN_2025 },
    ModelSpec { make: "Avalon", model: "1246", rated_ths: 90.0, rated_w: 3420.0, source: CANAAN },
    ModelSpec { make: "Avalon", model: "A15", rated_ths: 194.0, rated_w: 194.0 * 18.5, source: CANAAN_A15 },
    ModelSpec { make: "Avalon", model: "Q", rated_ths: 90.0, rated_w: 1674.0, source: CANAAN },
    ModelSpec { make: "Bitaxe", model: "Gamma", rated_ths: 1.2, rated_w: 17.0, source: BITAXE },
    ModelSpec { make: "Bitaxe", model: "Max", rated_ths: 0.4, rated_w: 12.0, source: BITAXE },
    ModelSpec { make: "Bitaxe", model: "Supra", rated_ths: 0.6, rated_w: 13.0, source: BITAXE },
    ModelSpec { make: "Bitaxe", model: "Ultra", rated_ths: 0.5, rated_w: 12.0, source: BITAXE },
    ModelSpec { make: "Whatsminer", model: "M30S++", rated_ths: 112.0, rated_w: 3472.0, source: MICROBT },
    ModelSpec { make: "Whatsminer", model: "M50S", rated_ths: 126.0, rated_w: 3276.0, source: MICROBT },
    ModelSpec { make: "Whatsminer", model: "M60", rated_ths: 172.0, rated_w: 172.0 * 19.9, source: MICROBT_M6X },
    ModelSpec { make: "Whatsminer", model: "M60S", rated_ths: 186.0, rated_w: 3441.0, source: MICROBT },
    ModelSpec { make: "Whatsminer", model: "M63", rated_ths: 334.0, rated_w: 334.0 * 19.9, source: MICROBT_M6X },
    ModelSpec { make: "Whatsminer", model: "M63S", rated_ths: 390.0, rated_w: 390.0 * 18.5, source: MICROBT_M6X },
    ModelSpec { make: "Whatsminer", model: "M66", rated_ths: 280.0, rated_w: 280.0 * 19.9, source: MICROBT_M6X },
    ModelSpec { make: "Whatsminer", model: "M66S", rated_ths: 298.0, rated_w: 298.0 * 18.5, source: MICROBT_M6X },
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
        assert_eq!(nominal_label(Some("Antminer"), Some("S23")), "11.0 J/TH");
        assert_eq!(nominal_label(None, None), "unrated");
        assert_eq!(lookup("Whatsminer", "M66S_VK30").unwrap().model, "M66S");
        for w in MODELS.windows(2) {
            assert!((w[0].make, w[0].model) < (w[1].make, w[1].model), "table not sorted at {:?}", w[1]);
        }
        for m in MODELS {
            assert!(m.rated_ths > 0.0 && m.rated_w > 0.0 && !m.source.is_empty(), "{m:?}");
        }
    }
}
