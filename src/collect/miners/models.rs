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
        for m in MODELS {
            assert!(m.rated_ths > 0.0 && m.rated_w > 0.0 && !m.source.is_empty(), "{m:?}");
        }
    }
}
