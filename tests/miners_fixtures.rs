//! Every miner capture in `tests/data/miners/` parsed; expected values are read off the raw
//! replies by hand and the arithmetic is written next to each assertion.

use serde_json::{Map, Value};
use wattledger::collect::miners::json::{first_num, first_str, parse_lenient};
use wattledger::collect::miners::profiles::{self, extract};
use wattledger::collect::miners::{
    finish, identify_axeos, identify_cgminer, identify_epic, identify_whatsminer, MinerReading, PowerSource,
};

fn cap(path: &str) -> Value {
    let p = format!("{}/tests/data/miners/{path}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
    parse_lenient(&bytes).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn doc(parts: &[(&str, &str)]) -> Value {
    let mut m = Map::new();
    for (k, f) in parts {
        m.insert((*k).to_owned(), cap(f));
    }
    Value::Object(m)
}

fn close(a: Option<f64>, b: f64) {
    let a = a.unwrap_or_else(|| panic!("expected {b}, got None"));
    assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "got {a}, expected {b}");
}

fn read_cg(d: &Value) -> MinerReading {
    finish("10.0.0.1", 4028, &identify_cgminer(d), d)
}

#[test]
fn antminer_stock_s19_pro() {
    let d = doc(&[
        ("version", "antminer-stock/version.json"),
        ("summary", "antminer-stock/summary.json"),
        ("stats", "antminer-stock/stats.json"),
        ("pools", "antminer-stock/pools.json"),
    ]);
    let r = read_cg(&d);
    assert_eq!(r.make.as_deref(), Some("Antminer")); // VERSION Type "Antminer S19 Pro"
    assert_eq!(r.model.as_deref(), Some("S19 Pro"));
    assert_eq!(r.firmware.as_deref(), Some("bmminer 49.0.1.3")); // BMMiner key, Miner "49.0.1.3"
    close(r.hashrate_ths, 110566.89 / 1000.0); // SUMMARY GHS 5s, rate_unit "GH"
                                               // No power field in a stock S19 Pro: estimated = 110.56689 TH/s × 3250 W / 110 TH/s
    close(r.power_w, 110.56689 * 3250.0 / 110.0);
    assert_eq!(r.power_source, Some(PowerSource::Estimated));
    close(r.diff_accepted, 1305083904.0); // SUMMARY "Difficulty Accepted"
    assert_eq!((r.shares_accepted, r.shares_rejected), (Some(4057), Some(11)));
    close(r.temp_c_max, 78.0); // temp_chip1 "78-50-69-70" and temp2_1 78
    close(r.fan_rpm_avg, (6000.0 + 5880.0 + 5040.0 + 5040.0) / 4.0); // fan1..fan4 = 5490
    assert_eq!(r.uptime_s, Some(50474)); // Elapsed
    assert!(r.online && r.error.is_none());
    // The rated hashrate comes from the miner itself: total_rateideal 110000.0 GH/s.
    close(extract(&profiles::ANTMINER, &d).rated_ths, 110.0);
}

#[test]
fn antminer_other_captures() {
    let devs = cap("antminer-stock/devs.json");
    assert_eq!(first_num(&devs, "DEVS/0/Accepted"), Some(4057.0));
    assert_eq!(first_num(&devs, "DEVS/0/Difficulty Accepted"), Some(1305083904.0));
    let pools = cap("antminer-stock/pools.json");
    assert_eq!(first_str(&pools, "POOLS/0/Diff"), Some("524K"));
    assert_eq!(first_num(&pools, "POOLS/0/Last Share Difficulty"), Some(524288.0));
    let sys = cap("antminer-stock/get_system_info.json");
    assert_eq!(first_str(&sys, "minertype"), Some("Antminer S21")); // a different machine (see README)
}

#[test]
fn luxos_s19k_pro() {
    let d = doc(&[
        ("version", "luxos/version.json"),
        ("summary", "luxos/summary.json"),
        ("stats", "luxos/stats.json"),
        ("pools", "luxos/pools.json"),
        ("power", "luxos/power.json"),
    ]);
    let r = read_cg(&d);
    assert_eq!(r.make.as_deref(), Some("Antminer"));
    assert_eq!(r.model.as_deref(), Some("S19k Pro"));
    assert_eq!(r.firmware.as_deref(), Some("LuxOS 2025.4.8.220305-57b389c7"));
    close(r.hashrate_ths, 59756.06 / 1000.0); // GHS 5s
    close(r.power_w, 1051.0); // POWER[0].Watts
    assert_eq!(r.power_source, Some(PowerSource::Reported));
    close(r.diff_accepted, 42323968.0);
    assert_eq!((r.shares_accepted, r.shares_rejected), (Some(1483), Some(1)));
    close(r.temp_c_max, 47.0); // temp_chip1 "47-34-34-47"
    close(r.fan_rpm_avg, (1920.0 + 1920.0 + 2340.0 + 2340.0) / 4.0); // = 2130
    assert_eq!(r.uptime_s, Some(3453));
    close(extract(&profiles::LUXOS, &d).rated_ths, 61954.2 / 1000.0); // total_rateideal

    // The other LuxOS commands.
    let temps = cap("luxos/temps.json");
    assert_eq!(first_num(&temps, "TEMPS/0/BottomRight"), Some(34.0));
    let fans = cap("luxos/fans.json");
    assert_eq!(first_num(&fans, "FANS/2/RPM"), Some(2340.0));
    assert_eq!(first_num(&cap("luxos/profiles.json"), "PROFILES/0/Watts"), Some(784.0));
    assert_eq!(first_str(&cap("luxos/config.json"), "CONFIG/0/Hostname"), Some("UrlacherS19k"));
    assert_eq!(first_num(&cap("luxos/devs.json"), "DEVS/0/Accepted"), Some(499.0));
    assert_eq!(first_num(&cap("luxos/pools.json"), "POOLS/0/Accepted"), Some(724.0));
}

#[test]
fn avalon_q_idle() {
    let d =
        doc(&[("version", "avalon/version.json"), ("summary", "avalon/summary.json"), ("stats", "avalon/stats.json")]);
    let r = read_cg(&d);
    assert_eq!((r.make.as_deref(), r.model.as_deref()), (Some("Avalon"), Some("Q"))); // PROD "Avalon Q"
    assert_eq!(r.firmware.as_deref(), Some("cgminer 4.11.1 (25052801_14a19a2)"));
    close(r.hashrate_ths, 0.0); // MM ID0:Summary GHSspd[0.00]: "Work: In Idle"
                                // No WALLPOWER; PS[0 1222 4 0 0 2245 146]: PS[4] = 0, so PS[5] = 2245 (asic-rs' rule)
    close(r.power_w, 2245.0);
    close(r.diff_accepted, 368550176.0);
    assert_eq!((r.shares_accepted, r.shares_rejected), (Some(890), Some(2)));
    close(r.temp_c_max, 27.0); // TMax[0] ignored, HBOTemp[27]
    close(r.fan_rpm_avg, 0.0); // Fan1..Fan4 all [0]
    assert_eq!(r.uptime_s, Some(37714)); // SUMMARY Elapsed
}

#[test]
fn avalon_a_series_stats_only() {
    let d = doc(&[("stats", "avalon/avalon_a_stats.json")]);
    let r = read_cg(&d);
    // No version reply: the model comes from MM ID0 Ver[1246-83-21072802_4ec6bb0_211fc46].
    assert_eq!((r.make.as_deref(), r.model.as_deref()), (Some("Avalon"), Some("1246")));
    close(r.hashrate_ths, 81072.68 / 1000.0); // GHSspd[81072.68]
    close(r.power_w, 3189.0); // PS[0 1214 1316 242 3189 1320 3504]: PS[4]
    close(r.temp_c_max, 77.0); // TMax[77], MTmax[77 77 76]
    close(r.fan_rpm_avg, (5344.0 + 5392.0 + 5349.0 + 5309.0) / 4.0); // = 5348.5
    assert_eq!(r.uptime_s, Some(24684)); // STATS[0].Elapsed
    assert_eq!(r.diff_accepted, None);
}

#[test]
fn avalon_other_captures() {
    assert_eq!(first_str(&cap("avalon/devdetails.json"), "DEVDETAILS/0/Driver"), Some("avalon"));
    assert_eq!(first_num(&cap("avalon/devs.json"), "DEVS/0/Accepted"), Some(890.0));
    assert_eq!(first_num(&cap("avalon/pools.json"), "POOLS/0/Difficulty Accepted"), Some(368550176.0));
    let lite = cap("avalon/litestats.json");
    let mm = first_str(&lite, "STATS/0/MM ID0:Summary").unwrap();
    assert_eq!(wattledger::collect::miners::json::bracket_nums(mm, "Elapsed"), vec![vec![37977.0]]);
}

#[test]
fn avalon_a1566_without_summary() {
    // pyasic's A1566 replies: version, stats, pools, devs; no `summary` among them.
    let d = doc(&[
        ("version", "avalon/a1566_version.json"),
        ("stats", "avalon/a1566_stats.json"),
        ("pools", "avalon/a1566_pools.json"),
    ]);
    let r = read_cg(&d);
    // PROD "AvalonMiner 15-194"; CGMiner 4.11.1 with MM ID0 Ver[15-194-24102401_25462b2_9ddf522].
    assert_eq!((r.make.as_deref(), r.model.as_deref()), (Some("Avalon"), Some("15-194")));
    assert_eq!(r.firmware.as_deref(), Some("cgminer 4.11.1 (15-194-24102401_25462b2_9ddf522)"));
    close(r.hashrate_ths, 199241.07 / 1000.0); // GHSspd[199241.07]
    close(r.power_w, 3731.0); // WALLPOWER[3731], before PS[4] 3526; pyasic's test expects 3731 too
    assert_eq!(r.power_source, Some(PowerSource::Reported));
    close(r.temp_c_max, 78.0); // TMax[78], MTmax[77 78 77]
    close(r.fan_rpm_avg, (4275.0 + 4282.0) / 2.0); // Fan1[4275] Fan2[4282], as pyasic reads them
    assert_eq!(r.uptime_s, Some(975)); // no summary: STATS[0].Elapsed
                                       // The accepted difficulty is summary's; the pools' own (38797312) is not read instead.
    assert_eq!(r.diff_accepted, None);
    assert_eq!(r.pool_url.as_deref(), Some("stratum+tcp://stratum.pool.io:3333")); // Stratum Active, priority 0
    assert_eq!(first_num(&cap("avalon/a1566_devs.json"), "DEVS/0/Difficulty Accepted"), Some(38797312.0));
}

#[test]
fn volcminer_d1() {
    let d = doc(&[
        ("version", "volcminer/version.json"),
        ("summary", "volcminer/summary.json"),
        ("stats", "volcminer/stats.json"),
        ("pools", "volcminer/pools.json"),
    ]);
    let r = read_cg(&d);
    assert_eq!((r.make.as_deref(), r.model.as_deref()), (Some("VolcMiner"), Some("D1"))); // Type "VolcMiner D1"
    assert_eq!(r.firmware.as_deref(), Some("VolcMiner 1.3.0.8 (ccminer 2.3.3)")); // Miner, STATUS Description
    close(r.hashrate_ths, 15498.96 / 1e6); // SUMMARY "MHS 5s" "15498.96" (Scrypt MH/s)
                                           // No power in the replies and no rated D1 in the model table: no power, not an estimate.
    assert_eq!((r.power_w, r.power_source), (None, None));
    assert_eq!(r.diff_accepted, None);
    assert_eq!((r.shares_accepted, r.shares_rejected), (Some(101), Some(3))); // POOLS 101 + 0, 3 + 0
    close(r.temp_c_max, 64.0); // temp1 64, temp2 63, temp3 0 (no third chain), temp4 63
    close(r.fan_rpm_avg, 5640.0); // fan1..fan4 5640
    assert_eq!(r.uptime_s, Some(1355)); // SUMMARY Elapsed
    assert_eq!(r.pool_url.as_deref(), Some("stratum+tcp://pool.invalid:3333")); // POOL 0 Alive
    assert!(r.online && r.error.is_none());
    // Its stats as the firmware writes them: `}{` between the STATS objects.
    let raw = cap("volcminer/stats_missing_comma.txt");
    assert_eq!(first_num(&raw, "STATS/1/fan1"), Some(5610.0));
    assert_eq!(first_str(&raw, "STATS/0/CGMiner"), Some("2.3.3"));
    // Without the `Type`, the generic fallback reads the same numbers as make `unknown`.
    let mut g = d.clone();
    g["version"]["VERSION"][0].as_object_mut().unwrap().remove("Type");
    let u = read_cg(&g);
    assert_eq!(u.make.as_deref(), Some("unknown"));
    assert_eq!(u.firmware.as_deref(), Some("ccminer 2.3.3")); // Description; its CGMiner 2.3.3 adds nothing
    close(u.hashrate_ths, 15498.96 / 1e6);
    assert_eq!(u.uptime_s, Some(1355));
}

#[test]
fn whatsminer_v1() {
    let d = doc(&[("get_version", "whatsminer-v1/get_version.json"), ("summary", "whatsminer-v1/summary.json")]);
    let r = finish("10.0.0.2", 4028, &identify_whatsminer(&d), &d);
    assert_eq!(r.make.as_deref(), Some("Whatsminer"));
    assert_eq!(r.firmware.as_deref(), Some("btminer 20210322.22.REL"));
    close(r.hashrate_ths, 70668114.52 / 1e6); // MHS 5s is MH/s
    close(r.power_w, 3417.0); // Power
    assert_eq!(r.power_source, Some(PowerSource::Reported));
    close(r.diff_accepted, 158334976.0);
    assert_eq!((r.shares_accepted, r.shares_rejected), (Some(2338), Some(0)));
    close(r.temp_c_max, 92.5); // Chip Temp Max 92.5 > Temperature 71.5
    close(r.fan_rpm_avg, (6450.0 + 6480.0) / 2.0); // Fan Speed In/Out
    assert_eq!(r.uptime_s, Some(10154)); // Elapsed (mining process), not Uptime 10792
    close(extract(&profiles::WHATSMINER, &d).rated_ths, 68796.0 / 1000.0); // Factory GHS

    assert_eq!(first_num(&cap("whatsminer-v1/devs.json"), "DEVS/0/MHS 5s"), Some(20053438.74));
    assert_eq!(first_num(&cap("whatsminer-v1/pools.json"), "POOLS/0/Accepted"), Some(2338.0));
    assert_eq!(first_str(&cap("whatsminer-v1/get_psu.json"), "Msg/model"), Some("P21-12-3600-E"));
    assert_eq!(first_str(&cap("whatsminer-v1/status.json"), "Msg/btmineroff"), Some("false"));
}

#[test]
fn whatsminer_v2() {
    let d = doc(&[("get_version", "whatsminer-v2/get_version.json"), ("summary", "whatsminer-v2/summary.json")]);
    let r = finish("10.0.0.3", 4028, &identify_whatsminer(&d), &d);
    assert_eq!(r.firmware.as_deref(), Some("btminer 20230803.11.REL"));
    close(r.hashrate_ths, 124500000.0 / 1e6); // no MHS 5s; HS RT in MH/s
    close(r.power_w, 3200.0);
    assert_eq!(r.diff_accepted, None); // this firmware's summary has no Difficulty Accepted
    assert_eq!((r.shares_accepted, r.shares_rejected), (Some(5412), None));
    close(r.temp_c_max, 81.0);
    close(r.fan_rpm_avg, (5400.0 + 5280.0) / 2.0);
    assert_eq!(r.uptime_s, Some(25000));

    assert_eq!(first_num(&cap("whatsminer-v2/devs.json"), "DEVS/1/Factory GHS"), Some(42000.0));
    assert_eq!(first_num(&cap("whatsminer-v2/pools.json"), "POOLS/0/Accepted"), Some(5412.0));
    assert_eq!(first_str(&cap("whatsminer-v2/get_psu.json"), "Msg/fan_speed"), Some("6000"));
    assert_eq!(first_str(&cap("whatsminer-v2/get_miner_info.json"), "Msg/hostname"), Some("WhatsMiner"));
    assert_eq!(cap("whatsminer-v2/get_error_code.json")["Msg"]["error_code"], serde_json::json!([]));
}

#[test]
fn whatsminer_v3_map() {
    let d = doc(&[
        ("summary", "whatsminer-v3/get_miner_status_summary.json"),
        ("pools", "whatsminer-v3/get_miner_status_pools.json"),
    ]);
    let x = extract(&profiles::WHATSMINER_V3, &d);
    close(x.hashrate_ths, 171.259); // hash-realtime, TH/s
    close(x.rated_ths, 181.051); // factory-hash
    close(x.power_w, 3156.0); // power-realtime
    close(x.temp_c_max, 82.0); // chip-temp-max 82.0 > board 41.5
    close(x.fan_rpm_avg, (5400.0 + 5280.0) / 2.0);
    assert_eq!(x.uptime_s, Some(50000));
    assert_eq!(x.shares_accepted, None); // the v3 pools capture has no counters
    let info = cap("whatsminer-v3/get_device_info.json");
    assert_eq!(first_str(&info, "msg/miner/type"), Some("M60S_VK40"));
    assert_eq!(first_num(&cap("whatsminer-v3/get_miner_status_edevs.json"), "msg/edevs/0/hash-realtime"), Some(57.2));
}

#[test]
fn bitaxe_axeos() {
    let d = doc(&[("system_info", "bitaxe-axeos/system_info.json")]);
    let r = finish("10.0.0.4", 80, &identify_axeos(&d), &d);
    assert_eq!((r.make.as_deref(), r.model.as_deref()), (Some("Bitaxe"), Some("Supra"))); // ASICModel BM1368
    assert_eq!(r.firmware.as_deref(), Some("AxeOS v2.4.5-3-gb5d1e36-dirty"));
    close(r.hashrate_ths, 1000.0 / 1000.0); // hashRate 1000 GH/s
    close(r.power_w, 2.65000009536743);
    assert_eq!((r.shares_accepted, r.shares_rejected), (Some(0), Some(0)));
    close(r.temp_c_max, 78.0); // vrTemp 78 > temp 59.875
    close(r.fan_rpm_avg, 3517.0);
    assert_eq!(r.uptime_s, Some(4));
    assert_eq!(r.diff_accepted, None);
}

#[test]
fn epic_powerplay() {
    let d = doc(&[("summary", "epic-powerplay/summary.json")]);
    let r = finish("10.0.0.5", 4028, &identify_epic(&d), &d);
    assert_eq!(r.firmware.as_deref(), Some("ePIC UMC PowerPlay-BMS v1.5.13"));
    close(r.hashrate_ths, 90071990.0 / 1e6); // Session "Average MHs"
    close(r.power_w, 2166.6174); // Power Supply Stats / Input Power
    assert_eq!((r.shares_accepted, r.shares_rejected), (Some(1862), Some(2)));
    close(r.temp_c_max, 67.0); // HBs Temperature 67.0, 64.312
                               // Fans Speed 1..4 = 5971, 0, 5942, 5745; 5..12 null
    close(r.fan_rpm_avg, (5971.0 + 0.0 + 5942.0 + 5745.0) / 4.0);
    assert_eq!(r.uptime_s, Some(23170));
    assert_eq!(first_str(&cap("epic-powerplay/capabilities.json"), "Chip Type"), Some("BM1366"));
    assert_eq!(first_num(&cap("epic-powerplay/temps.json"), "1/Data/1"), Some(67.0));
    assert_eq!(first_num(&cap("epic-powerplay/chip_hashrates.json"), "0/Data/0/0"), Some(417309.06));
    assert_eq!(first_str(&cap("epic-powerplay/network.json"), "dhcp/gateway"), Some("10.0.81.1"));
}

#[test]
fn braiins_rest_26_04() {
    let d = doc(&[
        ("stats", "braiins-os-26.04/miner_stats.json"),
        ("details", "braiins-os-26.04/miner_details.json"),
        ("cooling", "braiins-os-26.04/cooling_state.json"),
    ]);
    let x = extract(&profiles::BRAIINS_REST, &d);
    close(x.hashrate_ths, 248186.67720002498 / 1000.0); // real_hashrate.last_5s GH/s
    close(x.rated_ths, 234000.0 / 1000.0); // sticker_hashrate
    close(x.power_w, 3480.0); // approximated_consumption
    assert_eq!((x.shares_accepted, x.shares_rejected), (Some(848), Some(0)));
    close(x.temp_c_max, 65.375);
    close(x.fan_rpm_avg, (5943.0 + 5943.0 + 5943.0 + 5973.0) / 4.0); // fans[0..3].rpm = 5950.5
    assert_eq!(x.uptime_s, Some(7039)); // bosminer_uptime_s
    let hb = cap("braiins-os-26.04/miner_hw_hashboards.json");
    assert_eq!(first_num(&hb, "hashboards/0/stats/nominal_hashrate/gigahash_per_second"), Some(83433.20451864));
    let tuner = cap("braiins-os-26.04/performance_tuner_state.json");
    assert_eq!(first_num(&tuner, "mode_state/powertargetmodestate/current_target/watt"), Some(3500.0));
    assert_eq!(first_num(&cap("braiins-os-26.04/pools.json"), "0/pools/0/stats/accepted_shares"), Some(848.0));
    assert_eq!(first_num(&cap("braiins-os-26.04/version.json"), "minor"), Some(3.0));
}

#[test]
fn braiins_graphql_21_09() {
    let d = doc(&[("system", "braiins-os-21.09/gql_system.json"), ("pools", "braiins-os-21.09/gql_pools.json")]);
    let x = extract(&profiles::BRAIINS_GQL, &d);
    close(x.hashrate_ths, 7160208.944955902 / 1e6); // mhs5S
    close(x.rated_ths, 7242402.52323 / 1e6); // nominalMhs
    close(x.power_w, 735.0); // summary.power.approxConsumptionW (limitW 900 is a setting)
    assert_eq!((x.shares_accepted, x.shares_rejected), (Some(31 + 18), Some(0))); // two pool groups
    close(x.fan_rpm_avg, (4080.0 + 5580.0 + 0.0 + 0.0) / 4.0);
    assert_eq!(x.uptime_s, Some(1189));
    let boards = cap("braiins-os-21.09/gql_boards.json");
    assert_eq!(first_num(&boards, "data/bosminer/info/workSolver/childSolvers/0/nominalMhs"), Some(3017667.7198079997));
    assert_eq!(
        first_num(&cap("braiins-os-21.09/gql_tuning.json"), "data/bosminer/config/autotuning/powerTarget"),
        Some(900.0)
    );
    // BOSer answers the cgminer `version` command too: detected as Braiins OS.
    let v = doc(&[("version", "braiins-os-21.09/version.json")]);
    assert_eq!(identify_cgminer(&v).firmware.as_deref(), Some("Braiins OS (boser-openwrt 0.1.0-11012d53)"));
}

#[test]
fn goldshell_composites() {
    let sc5 = cap("goldshell/composite_sc5pro_2_2_0.json");
    let x = extract(&profiles::GOLDSHELL, &sc5);
    close(x.hashrate_ths, 10861769.547 / 1e6); // SUMMARY MHS 20s
    close(x.temp_c_max, 91.0); // tstemp-0/1 of board 2
                               // fan0..3: boards 1-3 all 2100, board 4: 2040, 2040, 2040, 2100 → (15×2100 + 3×2040... ) / 16
    close(x.fan_rpm_avg, (13.0 * 2100.0 + 3.0 * 2040.0) / 16.0);
    assert_eq!(x.uptime_s, Some(741660));
    assert_eq!(x.power_w, None);
    let ari = cap("goldshell/composite_ari31_2_2_3.json");
    let y = extract(&profiles::GOLDSHELL, &ari);
    close(y.hashrate_ths, 15365084.29 / 1e6);
    close(y.temp_c_max, 87.0);
    close(y.fan_rpm_avg, (4.0 * 3300.0 + 12.0 * 3360.0) / 16.0);
    assert_eq!(y.uptime_s, Some(66615));
    assert_eq!(first_str(&ari, "status/model"), Some("Goldshell-ARI31"));
}

#[test]
fn proto_rig() {
    let d = doc(&[("mining", "proto/mining.json"), ("cooling", "proto/cooling.json"), ("pools", "proto/pools.json")]);
    let x = extract(&profiles::PROTO, &d);
    close(x.hashrate_ths, 141147.4350314711 / 1000.0);
    close(x.rated_ths, 145000.0 / 1000.0);
    close(x.power_w, 3447.008523267969);
    assert_eq!((x.shares_accepted, x.shares_rejected), (Some(12345), Some(10)));
    close(x.temp_c_max, 71.90268170247448); // an average ASIC temperature, the only one given
    assert_eq!(x.uptime_s, Some(28));
    assert_eq!(first_str(&cap("proto/system.json"), "system-info/model"), Some("Rig"));
    assert_eq!(first_num(&cap("proto/hardware.json"), "hardware-info/fans-info/0/max_rpm"), Some(6000.0));
    assert_eq!(first_str(&cap("proto/telemetry_full.json"), "hashboards/0/hashrate/unit"), Some("TH/s"));
}

#[test]
fn point_for_the_asic_measurement() {
    let d = doc(&[("system_info", "bitaxe-axeos/system_info.json")]);
    let r = finish("127.0.1.6", 4028, &identify_axeos(&d), &d);
    let p = r.to_point(42);
    assert_eq!(p.measurement, "asic");
    assert_eq!(p.tag_value("miner"), Some("127.0.1.6:4028"));
    assert_eq!(p.tag_value("make"), Some("Bitaxe"));
    assert_eq!(p.tag_value("power_source"), Some("reported"));
    assert_eq!(p.field_value("hashrate_ths").and_then(|v| v.as_f64()), Some(1.0));
    assert_eq!(p.field_value("online"), Some(&wattledger::model::FieldValue::Bool(true)));
    assert!(p.field_value("diff_accepted").is_none()); // absent stays absent
    let off = MinerReading::offline("10.1.1.1", 4028, "refused").to_point(1);
    assert_eq!(off.fields.len(), 1);
}

#[test]
fn unit_slip_is_caught_and_not_stored() {
    // A firmware that labels its GH/s figure as TH/s: 110566.89 "TH/s" is 1005× the S19 Pro's
    // rated 110 TH/s. The reading keeps everything else and says why hashrate is missing.
    let mut d = doc(&[
        ("version", "antminer-stock/version.json"),
        ("summary", "antminer-stock/summary.json"),
        ("stats", "antminer-stock/stats.json"),
    ]);
    d["stats"]["STATS"][1]["rate_unit"] = Value::String("TH".into());
    let r = read_cg(&d);
    assert_eq!(r.hashrate_ths, None);
    assert!(r.online);
    assert!(r.error.as_deref().unwrap().contains("unit slip"), "{r:?}");
    assert_eq!(r.power_w, None); // no estimate from a rejected hashrate
    assert_eq!(r.uptime_s, Some(50474));
    // The opposite slip: MH/s read as if it were H/s-scaled → 0.11 GH/s, 1/1,000,000 of rated.
    d["stats"]["STATS"][1]["rate_unit"] = Value::String("MH".into());
    let r = read_cg(&d);
    assert_eq!(r.hashrate_ths, None);
    assert!(r.error.as_deref().unwrap().contains("TH/s read as GH/s"), "{r:?}");
    // An unknown model: only the absolute ceiling applies (2000 TH/s).
    assert!(wattledger::collect::miners::check_hashrate(110566.89, None).is_err());
    assert_eq!(wattledger::collect::miners::check_hashrate(110.0, None), Ok(110.0));

    // Power in kW read as W: LuxOS's POWER[0].Watts 1051 written as 1.051 at 59.756 TH/s is
    // 0.0176 J/TH. Not stored; the S19k Pro's rated 23 J/TH estimate stands in, said so.
    let mut d = doc(&[
        ("version", "luxos/version.json"),
        ("summary", "luxos/summary.json"),
        ("stats", "luxos/stats.json"),
        ("power", "luxos/power.json"),
    ]);
    d["power"]["POWER"][0]["Watts"] = 1.051.into();
    let r = read_cg(&d);
    assert!(r.error.as_deref().unwrap().contains("kW read as W"), "{r:?}");
    assert_eq!(r.power_source, Some(PowerSource::Estimated));
    close(r.hashrate_ths, 59.75606);
    // A sensor's 0.5 W while the miner hashes (0.008 J/TH) is refused the same way; a 0 W
    // figure is no figure at all (the field maps read power only above 0).
    d["power"]["POWER"][0]["Watts"] = 0.5.into();
    assert!(read_cg(&d).error.as_deref().unwrap().contains("unit slip"));
    // Not hashing, a low figure is the miner's own and is kept.
    d["summary"]["SUMMARY"][0]["GHS 5s"] = 0.0.into();
    let r = read_cg(&d);
    assert_eq!((r.power_w, r.power_source, r.error), (Some(0.5), Some(PowerSource::Reported), None));
}

#[test]
fn raw_wire_quirks_nul_brace_strings_and_garbage() {
    // bmminer-style multi-command reply as bytes: `}{` between the STATS objects, numbers as
    // strings, a NUL terminator and bytes after it.
    let raw = br#"{"version":[{"STATUS":[{"STATUS":"S"}],"VERSION":[{"BMMiner":"1.0.0","Miner":"49.0.1.3","Type":"Antminer S19 Pro"}]}],"summary":[{"STATUS":[{"STATUS":"S"}],"SUMMARY":[{"GHS 5s":"104000.50","Accepted":"12","Rejected":"1","Difficulty Accepted":"6291456","Elapsed":"600"}]}],"stats":[{"STATUS":[{"STATUS":"S"}],"STATS":[{"Type":"Antminer S19 Pro"}{"rate_unit":"GH","fan1":"6000","fan2":6120,"temp_chip1":"70-71-72-73"}]}],"id":1}"#;
    let mut bytes = raw.to_vec();
    bytes.push(0);
    bytes.extend_from_slice(b"\xff\xfegarbage");
    let v = parse_lenient(&bytes).unwrap();
    let parts = wattledger::collect::miners::split_multi(v, &["version", "summary", "stats"]).unwrap();
    let d = Value::Object(parts);
    let r = read_cg(&d);
    assert_eq!(r.model.as_deref(), Some("S19 Pro"));
    close(r.hashrate_ths, 104000.50 / 1000.0); // string "104000.50" GH/s
    assert_eq!((r.shares_accepted, r.shares_rejected), (Some(12), Some(1)));
    close(r.diff_accepted, 6291456.0);
    close(r.fan_rpm_avg, (6000.0 + 6120.0) / 2.0); // one string, one number
    close(r.temp_c_max, 73.0);
    assert_eq!(r.uptime_s, Some(600));
    // Whatsminer-style error for a multi-command, and a cgminer error part.
    let e = parse_lenient(br#"{"STATUS":"E","When":1,"Code":14,"Msg":"invalid cmd","Description":""}"#).unwrap();
    assert_eq!(wattledger::collect::miners::split_multi(e.clone(), &["version"]), Err("invalid cmd".into()));
    let e = parse_lenient(br#"{"version":[{"STATUS":[{"STATUS":"E","Msg":"Access denied"}]}]}"#).unwrap();
    assert_eq!(wattledger::collect::miners::split_multi(e.clone(), &["version"]), Err("version: Access denied".into()));
}

#[test]
fn pool_in_use_follows_a_failover() {
    let lux = || {
        doc(&[
            ("version", "luxos/version.json"),
            ("summary", "luxos/summary.json"),
            ("stats", "luxos/stats.json"),
            ("pools", "luxos/pools.json"),
        ])
    };
    // POOLS[0] (priority 0) and POOLS[2] (priority 2, group 1) are both `Stratum Active`: the first by priority.
    let r = read_cg(&lux());
    assert_eq!(r.pool_url.as_deref(), Some("stratum+tcp://ca.stratum.braiins.com:3333"));
    assert_eq!((r.pool_user.as_deref(), r.pool_alive), (Some("asic-rs.user1"), Some(true)));
    // POOLS[0] goes down: the miner mines on POOLS[2].
    let mut d = lux();
    d["pools"]["POOLS"][0]["Status"] = "Dead".into();
    d["pools"]["POOLS"][0]["Stratum Active"] = false.into();
    let r = read_cg(&d);
    assert_eq!((r.pool_user.as_deref(), r.pool_alive), (Some("asic-rs.user2"), Some(true)));
    // Every pool down: the first by priority, reported down (not dropped).
    for p in d["pools"]["POOLS"].as_array_mut().unwrap() {
        p["Status"] = "Dead".into();
        p["Stratum Active"] = false.into();
    }
    let r = read_cg(&d);
    assert_eq!(r.pool_url.as_deref(), Some("stratum+tcp://ca.stratum.braiins.com:3333"));
    assert_eq!((r.pool_user.as_deref(), r.pool_alive), (Some("asic-rs.user1"), Some(false)));
    // No `pools` reply (a cgminer refusing it): no pool, the rest of the reading stands.
    let mut d = lux();
    d.as_object_mut().unwrap().remove("pools");
    let r = read_cg(&d);
    assert_eq!((r.pool_url, r.pool_user, r.pool_alive), (None, None, None));
    assert!(r.online && r.hashrate_ths.is_some());

    // AxeOS on its fallback pool (`isUsingFallbackStratum` 1): the fallback's keys.
    let mut d = doc(&[("system_info", "bitaxe-axeos/system_info.json")]);
    let r = finish("10.0.0.4", 80, &identify_axeos(&d), &d);
    assert_eq!((r.pool_url.as_deref(), r.pool_alive), (Some("btc.example.pool:3333"), None));
    d["system_info"]["isUsingFallbackStratum"] = 1.into();
    let r = finish("10.0.0.4", 80, &identify_axeos(&d), &d);
    assert_eq!(r.pool_url.as_deref(), Some("btc2.example.pool:3333")); // fallbackStratumURL + Port
    assert_eq!(r.pool_user.as_deref(), Some("asic-rs.test"));

    // ePIC's connection in use; `IsPoolConnected` false = down.
    let mut d = doc(&[("summary", "epic-powerplay/summary.json")]);
    d["summary"]["Stratum"]["IsPoolConnected"] = false.into();
    let r = finish("10.0.0.5", 4028, &identify_epic(&d), &d);
    assert_eq!((r.pool_url.as_deref(), r.pool_alive), (Some("mine.ocean.xyz:3334"), Some(false)));
}

#[test]
fn no_pool_password_is_shipped() {
    let mut d = doc(&[
        ("version", "antminer-stock/version.json"),
        ("summary", "antminer-stock/summary.json"),
        ("stats", "antminer-stock/stats.json"),
        ("pools", "antminer-stock/pools.json"),
    ]);
    // Credentials where firmwares let an operator put them: in the URL's user part, its
    // query, and after a `:` in the worker.
    d["pools"]["POOLS"][0]["URL"] = "stratum+tcp://acct:s3cret@btc.global.luxor.tech:700/?password=s3cret".into();
    d["pools"]["POOLS"][0]["User"] = "satokierepair.H04YK:s3cret".into();
    let r = read_cg(&d);
    assert_eq!(r.pool_url.as_deref(), Some("stratum+tcp://btc.global.luxor.tech:700"));
    assert_eq!(r.pool_user.as_deref(), Some("satokierepair.H04YK"));
    let point = r.to_point(1);
    let shipped = format!("{point:?} {}", serde_json::to_string(&r).unwrap());
    assert!(!shipped.contains("s3cret"), "{shipped}");
    // Pool URL and worker are fields, never tags: a failover must not start a new series.
    assert!(point.tag_value("pool_url").is_none() && point.tag_value("pool_user").is_none());
    assert!(point.fields.iter().any(|(k, _)| k == "pool_url"));
    // ePIC keeps `password` in `StratumConfigs`; only `Stratum` is read.
    let d = doc(&[("summary", "epic-powerplay/summary.json")]);
    assert_eq!(first_str(&d, "summary/StratumConfigs/0/password"), Some("password"));
    let r = finish("10.0.0.5", 4028, &identify_epic(&d), &d);
    assert!(!serde_json::to_string(&r).unwrap().to_lowercase().contains("password"));
    assert_eq!(r.pool_user.as_deref(), Some("randomuser.randomworker-0x81x19"));
}
