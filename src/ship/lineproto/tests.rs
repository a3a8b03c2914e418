use super::*;
use proptest::prelude::*;

fn enc(p: &Point) -> String {
    let mut s = String::new();
    encode(p, &mut s).unwrap();
    s
}

fn parse_ns(text: &str) -> Result<Vec<Point>, ParseError> {
    parse_with_default_time(text, Precision::Ns, 42)
}

#[test]
fn encodes_all_types_and_escapes() {
    let p = Point::new("gpu power,x", 1_700_000_000_000_000_000)
        .tag("host", "rig 1,a=b")
        .tag("k=y", "v")
        .field("power w", 251.5)
        .field("energy_j", 12i64)
        .field("count", 7u64)
        .field("ok", true)
        .field("note", "say \"hi\" \\ bye");
    assert_eq!(
        enc(&p),
        "gpu\\ power\\,x,host=rig\\ 1\\,a\\=b,k\\=y=v power\\ w=251.5,energy_j=12i,count=7u,ok=true,note=\"say \\\"hi\\\" \\\\ bye\" 1700000000000000000\n"
    );
    assert_eq!(parse_ns(&enc(&p)).unwrap(), vec![p]);
}

#[test]
fn equals_in_measurement_is_literal() {
    let p = Point::new("a=b", 1).field("v", 1.0);
    assert_eq!(enc(&p), "a=b v=1.0 1\n");
    assert_eq!(parse_ns(&enc(&p)).unwrap(), vec![p]);
}

#[test]
fn floats_keep_their_bits() {
    for f in [0.0, -0.0, 1.0, 0.1, 1e300, -1e-300, f64::MAX, f64::MIN_POSITIVE, 5e-324, 123456.789] {
        let p = Point::new("m", 1).field("v", f);
        let back = parse_ns(&enc(&p)).unwrap();
        assert_eq!(back[0].fields[0].1, FieldValue::Float(f), "{f}");
        if let FieldValue::Float(g) = back[0].fields[0].1 {
            assert_eq!(g.to_bits(), f.to_bits());
        }
    }
}

#[test]
fn refuses_what_influxdb_cannot_store() {
    let mut out = String::from("keep\n");
    for (p, want) in [
        (Point::new("m", 1).field("v", f64::NAN), "NaN"),
        (Point::new("m", 1).field("v", f64::INFINITY), "inf"),
        (Point::new("m", 1), "no fields"),
        (Point::new("", 1).field("v", 1.0), "empty measurement"),
        (Point::new("#m", 1).field("v", 1.0), "comment"),
        (Point::new("m", 1).tag("h", "a\nb").field("v", 1.0), "line break"),
        (Point::new("m", 1).tag("h", "a\\").field("v", 1.0), "ends with a backslash"),
        (Point::new("m", 1).tag("h", "a\\,b").field("v", 1.0), "backslash before"),
        (Point::new("m\\\\x", 1).field("v", 1.0), "backslash before"),
    ] {
        let err = encode(&p, &mut out).unwrap_err().to_string();
        assert!(err.contains(want), "{err} should mention {want}");
        assert_eq!(out, "keep\n", "nothing appended on error");
    }
    let mut p = Point::new("m", 1).field("v", 1.0);
    p.tags.push(("h".into(), String::new()));
    assert!(encode(&p, &mut out).unwrap_err().to_string().contains("empty"));
    assert!(encode_batch(&[Point::new("m", 1).field("v", 1.0), Point::new("m", 1)]).is_err());
}

#[test]
fn lone_backslashes_in_names_are_literal() {
    let p = Point::new("C:\\dir", 5).tag("path", "C:\\Users\\x").field("f\\g", 1i64);
    assert_eq!(enc(&p), "C:\\dir,path=C:\\Users\\x f\\g=1i 5\n");
    assert_eq!(parse_ns(&enc(&p)).unwrap(), vec![p]);
}

#[test]
fn parses_what_influxdb_accepts() {
    let text = "# comment\n\n  cpu,b=2,a=1 v=1,w=-2.5e3,i=-3i,u=4u,s=\"x\",t=t,f=FALSE 1500\r\n\
                cpu v=.5\n\
                cpu  v=1   7  \n\
                cpu v=\"multi\nline\" 9\n";
    let pts = parse_ns(text).unwrap();
    assert_eq!(pts.len(), 4);
    assert_eq!(pts[0].tags, vec![("a".into(), "1".into()), ("b".into(), "2".into())]);
    assert_eq!(
        pts[0].fields.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
        vec![
            FieldValue::Float(1.0),
            FieldValue::Float(-2500.0),
            FieldValue::Int(-3),
            FieldValue::UInt(4),
            FieldValue::Str("x".into()),
            FieldValue::Bool(true),
            FieldValue::Bool(false)
        ]
    );
    assert_eq!(pts[0].time_ns, 1500);
    assert_eq!(pts[1].time_ns, 42, "default time for a line without timestamp");
    assert_eq!(pts[1].fields[0].1, FieldValue::Float(0.5));
    assert_eq!(pts[2].time_ns, 7);
    assert_eq!(pts[3].fields[0].1, FieldValue::Str("multi\nline".into()));
}

#[test]
fn repeated_fields_keep_first_place_and_last_value() {
    let p = &parse_ns("m a=1i,b=2i,a=3i 1").unwrap()[0];
    assert_eq!(p.fields, vec![("a".into(), FieldValue::Int(3)), ("b".into(), FieldValue::Int(2))]);
    let many: Vec<String> = (0..20).map(|i| format!("field_with_long_prefix_{i}={i}i")).collect();
    let line = format!("m {},field_with_long_prefix_17=99i,field_with_long_prefix_3=98i 1", many.join(","));
    let p = &parse_ns(&line).unwrap()[0];
    assert_eq!(p.fields.len(), 20);
    assert_eq!(p.fields[17].1, FieldValue::Int(99));
    assert_eq!(p.fields[3].1, FieldValue::Int(98));
}

#[test]
fn precision_scales_and_checks_overflow() {
    for (prec, want) in
        [(Precision::S, 3_000_000_000), (Precision::Ms, 3_000_000), (Precision::Us, 3_000), (Precision::Ns, 3)]
    {
        assert_eq!(parse_with_default_time("m v=1 3", prec, 0).unwrap()[0].time_ns, want);
    }
    let err = parse_with_default_time("m v=1 9223372036854775807", Precision::S, 0).unwrap_err();
    assert!(err.message.contains("out of range"), "{err}");
    assert_eq!("u".parse::<Precision>(), Ok(Precision::Us));
    assert!("h".parse::<Precision>().is_err());
}

#[test]
fn errors_name_line_and_column() {
    let cases: &[(&str, usize, usize, &str)] = &[
        ("m v=1 1\nm v=1 1\nm,host=a value=1,x=abc 3\n", 3, 20, "field `x`"),
        ("m v=NaN 1", 1, 5, "invalid value"),
        ("m v=inf", 1, 5, "invalid value"),
        ("m v=1i2", 1, 5, "invalid"),
        ("m v=99999999999999999999i", 1, 5, "out of range"),
        ("m v=-1u", 1, 5, "unsigned"),
        ("m", 1, 2, "space before the fields"),
        ("m ", 1, 3, "missing field key"),
        ("m,t v=1", 1, 4, "expected `=` after tag key"),
        ("m,t= v=1", 1, 5, "missing tag value"),
        (",t=1 v=1", 1, 1, "missing measurement"),
        ("m,a=1,a=2 v=1", 1, 7, "duplicate tag key"),
        ("m v= 1", 1, 5, "missing value"),
        ("m v=\"abc 1", 1, 5, "unterminated string"),
        ("m v=1 12x", 1, 7, "invalid timestamp"),
        ("m v=1 1 2", 1, 9, "after the timestamp"),
        ("m\\", 1, 2, "backslash"),
        ("é,ü=1 ü=é", 1, 9, "invalid value"),
    ];
    for (text, line, column, msg) in cases {
        let err = parse_ns(text).unwrap_err();
        assert_eq!((err.line, err.column), (*line, *column), "{text:?}: {err}");
        assert!(err.message.contains(msg), "{text:?}: {err}");
        assert!(err.to_string().starts_with(&format!("line {line}, column {column}: ")));
    }
}

/// Names that every InfluxDB parser reads back the same way: anything but line
/// breaks and backslashes, plus backslashes placed where they are unambiguous.
fn name() -> impl Strategy<Value = String> {
    prop_oneof!["[^\\\\\\x00-\\x1f\\x7f]{1,12}", "[a-z]{1,3}\\\\[a-z]{1,3}", "[ ,=\"a-z\u{e9}\u{1F600}]{1,8}",]
        .prop_filter("not a comment", |s| !s.starts_with('#'))
}

fn field_value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(FieldValue::Float),
        any::<i64>().prop_map(FieldValue::Int),
        any::<u64>().prop_map(FieldValue::UInt),
        any::<bool>().prop_map(FieldValue::Bool),
        any::<String>().prop_map(FieldValue::Str),
        "[\"\\\\ \n,=a]{0,8}".prop_map(FieldValue::Str),
    ]
}

fn point() -> impl Strategy<Value = Point> {
    (
        name(),
        proptest::collection::vec((name(), name()), 0..4),
        proptest::collection::vec((name(), field_value()), 1..6),
        any::<i64>(),
    )
        .prop_map(|(m, tags, fields, t)| {
            let mut p = Point::new(m, t);
            for (k, v) in tags {
                p.set_tag(k, v);
            }
            for (k, v) in fields {
                p.set_field(k, v);
            }
            p
        })
}

#[test]
fn split_lines_keeps_strings_whole() {
    let body = "a v=\"x\ny\" 1\n\nb,t=q\"=\" v=1 2\nc s=\"a\\\"\nb\" 3";
    assert_eq!(split_lines(body), ["a v=\"x\ny\" 1", "b,t=q\"=\" v=1 2", "c s=\"a\\\"\nb\" 3"]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_parse_round_trips(points in proptest::collection::vec(point(), 1..4)) {
        let body = encode_batch(&points).unwrap();
        let back = parse_ns(&body).unwrap();
        prop_assert_eq!(back, points);
    }

    /// InfluxData's own Rust parser reads our output the same way.
    #[test]
    fn influxdata_parser_agrees(p in point()) {
        let body = enc(&p);
        let line = influxdb_line_protocol::parse_lines(&body).next().unwrap().unwrap();
        prop_assert_eq!(line.series.measurement.as_str(), p.measurement.as_str());
        let tags: Vec<(String, String)> = line.series.tag_set.iter().flatten()
            .map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut want_tags = p.tags.clone();
        want_tags.sort();
        prop_assert_eq!(tags, want_tags);
        prop_assert_eq!(line.field_set.len(), p.fields.len());
        for ((k, v), (wk, wv)) in line.field_set.iter().zip(&p.fields) {
            prop_assert_eq!(k.as_str(), wk.as_str());
            use influxdb_line_protocol::FieldValue as F;
            let same = match (v, wv) {
                (F::F64(a), FieldValue::Float(b)) => a.to_bits() == b.to_bits(),
                (F::I64(a), FieldValue::Int(b)) => a == b,
                (F::U64(a), FieldValue::UInt(b)) => a == b,
                (F::Boolean(a), FieldValue::Bool(b)) => a == b,
                (F::String(a), FieldValue::Str(b)) => a.as_str() == b,
                _ => false,
            };
            prop_assert!(same, "{:?} vs {:?}", v, wv);
        }
        prop_assert_eq!(line.timestamp, Some(p.time_ns));
    }

    /// Every name either encodes so that it round-trips, or is refused; never garbled.
    #[test]
    fn any_name_round_trips_or_is_refused(m in any::<String>(), k in any::<String>(), v in any::<String>()) {
        let p = Point::new(m, 1).tag(k.clone(), v).field(k, 1i64);
        let mut out = String::new();
        if encode(&p, &mut out).is_ok() {
            prop_assert_eq!(parse_ns(&out).unwrap(), vec![p]);
        } else {
            prop_assert!(out.is_empty());
        }
    }

    #[test]
    fn split_lines_matches_the_encoder(points in proptest::collection::vec(point(), 1..6)) {
        let body = encode_batch(&points).unwrap();
        let lines = split_lines(&body);
        prop_assert_eq!(lines.len(), points.len());
        for (line, p) in lines.iter().zip(&points) {
            prop_assert_eq!(&parse_ns(line).unwrap(), &vec![p.clone()]);
        }
    }

    #[test]
    fn parser_never_panics_on_strings(s in any::<String>()) {
        let _ = parse_ns(&s);
    }

    #[test]
    fn parser_never_panics_on_line_like_text(s in "[a-z ,=\\\\\"\n\r\tiu0-9.eE+#-]{0,40}") {
        if let Err(e) = parse_ns(&s) {
            prop_assert!(e.line >= 1 && e.column >= 1);
        }
    }

    #[test]
    fn parser_never_panics_on_bytes(b in proptest::collection::vec(any::<u8>(), 0..64)) {
        let s = String::from_utf8_lossy(&b);
        let _ = parse_ns(&s);
    }
}

#[test]
fn control_characters_in_names_are_refused_like_influxdb_2() {
    for text in ["m\x01 v=1 1", "m,t\x1b=a v=1 1", "m,t=a\x7f v=1 1", "m v\x02=1 1", "m,t=a\tb v=1 1"] {
        let err = parse_ns(text).unwrap_err();
        assert_eq!(err.line, 1, "{text:?}: {err}");
        assert!(err.message.contains("control character") || err.message.contains("tab"), "{text:?}: {err}");
    }
    // Tabs and control characters stay allowed inside string field values.
    assert_eq!(parse_ns("m v=\"a\tb\x01\" 1").unwrap()[0].fields[0].1, FieldValue::Str("a\tb\x01".into()));
}

#[test]
fn what_the_parser_accepts_every_store_accepts() {
    // A double backslash in a tag value: the parser used to read it, the store refused it.
    for text in ["m,t=a\\\\b v=1 1", "m,t=a\tb v=1 1"] {
        let err = parse_ns(text).unwrap_err();
        assert_eq!(err.line, 1, "{text:?}");
    }
    let ok = parse_ns("m,t=C:\\Users v=1 1").unwrap();
    validate(&ok[0]).unwrap();
}

#[test]
fn per_line_limits_are_enforced() {
    let limits = Limits { max_fields_per_line: 3, max_tags_per_line: 2, max_key_bytes: 8, max_tag_value_bytes: 5 };
    let p = |t: &str| parse_limited(t, Precision::Ns, 0, &limits);
    assert!(p("m,a=1,b=2 x=1,y=2,z=3 1").is_ok());
    assert!(p("m x=1,y=2,z=3,w=4 1").unwrap_err().message.contains("more than 3 fields"));
    // A repeated field is not a new field.
    assert!(p("m x=1,y=2,z=3,x=4 1").is_ok());
    assert!(p("m,a=1,b=2,c=3 x=1 1").unwrap_err().message.contains("more than 2 tags"));
    assert!(p("m,a=123456 x=1 1").unwrap_err().message.contains("tag value is 6 bytes"));
    assert!(p("measurement x=1 1").unwrap_err().message.contains("measurement name is 11 bytes"));
    assert!(p("m,keykeykey=1 x=1 1").unwrap_err().message.contains("tag key"));
    assert!(p("m fieldfield=1 x=1 1").unwrap_err().message.contains("field key"));
}

#[test]
fn duplicate_fields_are_found_in_linear_time() {
    // A complexity guard, not a speed target: 100,000 distinct fields take well under
    // a second when linear, and minutes with the quadratic scan this replaced.
    let n = 100_000;
    let mut line = String::from("m ");
    for i in 0..n {
        line.push_str(&format!("f{i}=1,"));
    }
    line.push_str(&format!("f7=2,f{}=3 1", n - 1));
    let limits = Limits { max_fields_per_line: n, ..Limits::default() };
    let started = std::time::Instant::now();
    let points = parse_limited(&line, Precision::Ns, 0, &limits).unwrap();
    let took = started.elapsed();
    assert_eq!(points[0].fields.len(), n);
    assert_eq!(points[0].fields[7].1, FieldValue::Float(2.0));
    assert_eq!(points[0].fields[n - 1].1, FieldValue::Float(3.0));
    assert!(took < std::time::Duration::from_secs(15), "took {took:?}");
}
