//! The NVML source in-process over a private copy of the fake library, driving the
//! fake's clock through the control symbol: a GPU lost mid-run and back, a counter
//! reset, points of the `gpu` measurement, refcounted init/shutdown.

mod nvml_support;

use nvml_support::{at, data_scenario, fake};
use wattledger::collect::nvml::{GpuStatus, NvmlSource};
use wattledger::collect::Source;
use wattledger::model::FieldValue;

#[test]
fn lost_gpu_mid_run_is_reported_then_picked_up_again() {
    let mut f = fake(&data_scenario("lost-and-reload.json", 0.0));
    f.set_sim_time_ns(at(40.0)).unwrap();
    let mut src = NvmlSource::open(Some(f.lib_path())).unwrap();

    let r = src.read_all();
    assert_eq!(r[0].status, GpuStatus::Ok);
    assert_eq!(r[0].energy_j, Some(1000.0 + 500.0 * 40.0));

    f.set_sim_time_ns(at(55.0)).unwrap();
    let r = src.read_all();
    assert_eq!(r[0].status, GpuStatus::Lost);
    assert_eq!(r[0].uuid.as_deref(), Some("GPU-a0000000-0000-4000-8000-000000000000"), "identity kept for the tags");
    assert_eq!(
        (r[0].power_w, r[0].energy_j, r[0].util_gpu_pct, r[0].mem_used_bytes),
        (None, None, None, None),
        "no stale values"
    );
    assert_eq!(r[1].status, GpuStatus::Ok, "the other GPU is still read");
    assert_eq!(r[1].energy_j, Some(200.0 * 55.0));

    // Back on the bus: read again through a fresh handle, with fresh values.
    f.set_sim_time_ns(at(75.0)).unwrap();
    let r = src.read_all();
    assert_eq!(r[0].status, GpuStatus::Ok);
    assert_eq!(r[0].energy_j, Some(1000.0 + 500.0 * 75.0));
    assert_eq!(r[0].power_w, Some(500.0));
    assert_eq!(r[0].util_gpu_pct, Some(90));
    assert_eq!(r[0].name.as_deref(), Some("NVIDIA H100 80GB HBM3"));

    // Driver reload at 100 s: the counter goes backwards and is reported as is.
    f.set_sim_time_ns(at(104.0)).unwrap();
    let r = src.read_all();
    assert_eq!(r[0].energy_j, Some(500.0 * 4.0));
    assert_eq!(r[1].energy_j, Some(200.0 * 4.0));
}

#[tokio::test]
async fn collect_emits_gpu_points_with_tags_and_only_known_fields() {
    let mut f = fake(&data_scenario("sine-and-old-driver.json", 0.0));
    f.set_sim_time_ns(at(10.0)).unwrap();
    let mut src = NvmlSource::open(Some(f.lib_path())).unwrap();
    assert_eq!(src.name(), "nvml");
    assert_eq!(src.driver_version().as_deref(), Some("470.239.06"));
    let points = src.collect(123).await.unwrap();
    assert_eq!(points.len(), 3);
    for (i, p) in points.iter().enumerate() {
        assert_eq!(p.measurement, "gpu");
        assert_eq!(p.time_ns, 123);
        assert_eq!(p.tag_value("gpu"), Some(i.to_string().as_str()));
        assert!(p.tag_value("uuid").unwrap().starts_with("GPU-b0000000"));
        assert_eq!(p.field_value("status"), Some(&FieldValue::Str("ok".into())));
    }
    assert_eq!(points[0].tag_value("model"), Some("NVIDIA L40S"));
    // Instantaneous power where the driver has the field: 300 + 100 sin(2π·10/60).
    let instant = points[0].field_value("power_instant_w").and_then(FieldValue::as_f64).unwrap();
    let expected = 300.0 + 100.0 * (2.0 * std::f64::consts::PI * 10.0 / 60.0).sin();
    assert!((instant - (expected * 1000.0).round() / 1000.0).abs() < 1e-9, "{instant} vs {expected}");
    // The old-driver V100 has neither field values nor utilization nor clocks: left out.
    let v100 = &points[1];
    for absent in ["power_instant_w", "util_gpu_pct", "util_mem_pct", "sm_clock_mhz"] {
        assert!(v100.field_value(absent).is_none(), "{absent} should be absent: {v100:?}");
    }
    assert_eq!(v100.field_value("power_w"), Some(&FieldValue::Float(290.0)));
    assert_eq!(v100.field_value("energy_j"), Some(&FieldValue::Float(800.0)));
    // The next poll still reads the rest (unsupported fields never stop a GPU).
    f.set_sim_time_ns(at(12.0)).unwrap();
    let again = src.collect(124).await.unwrap();
    assert_eq!(again[1].field_value("energy_j"), Some(&FieldValue::Float(800.0 + 2.0 * 290.0)));
}

#[test]
fn two_sources_on_one_library_share_a_refcounted_init() {
    let mut f = fake(&data_scenario("two-h100-steps.json", 0.0));
    f.set_sim_time_ns(at(30.0)).unwrap();
    let mut a = NvmlSource::open(Some(f.lib_path())).unwrap();
    let b = NvmlSource::open(Some(f.lib_path())).unwrap();
    drop(b); // nvmlShutdown once; `a` still holds NVML open
    let r = a.read_all();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].status, GpuStatus::Ok);
    assert_eq!(r[0].energy_j, Some(5000.0 + 100.0 * 30.0));
}

#[test]
fn copies_of_the_library_are_independent() {
    let mut early = fake(&data_scenario("two-h100-steps.json", 0.0));
    let mut late = fake(&data_scenario("two-h100-steps.json", 0.0));
    early.set_sim_time_ns(at(10.0)).unwrap();
    late.set_sim_time_ns(at(70.0)).unwrap();
    let mut a = NvmlSource::open(Some(early.lib_path())).unwrap();
    let mut b = NvmlSource::open(Some(late.lib_path())).unwrap();
    assert_eq!(a.read_all()[1].energy_j, Some(2500.0));
    assert_eq!(b.read_all()[1].energy_j, Some(17_500.0));
}

#[test]
fn the_ready_made_rig_scenario_loads_and_varies_with_time() {
    let scenario = wattledger::sim::gpus::rig_scenario(4, Some(nvml_support::START_NS), 1.0);
    let mut f = wattledger::sim::gpus::FakeNvml::install(&scenario).unwrap();
    f.set_sim_time_ns(at(100.0)).unwrap();
    let mut src = NvmlSource::open(Some(f.lib_path())).unwrap();
    let a = src.read_all();
    assert_eq!(a.len(), 4);
    assert!(a.iter().all(|r| r.status == GpuStatus::Ok && r.power_w.is_some() && r.energy_j.is_some()));
    f.set_sim_time_ns(at(1000.0)).unwrap();
    let b = src.read_all();
    assert_ne!(a[0].power_w, b[0].power_w, "sine load moves");
    assert_ne!(a[1].power_w, b[1].power_w, "train/idle steps move");
    assert!(b.iter().zip(&a).all(|(b, a)| b.energy_j > a.energy_j));
}
