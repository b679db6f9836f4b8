use super::*;

const MONDAY_9: u64 = 1_767_603_600_000; // 2026-01-05T09:00:00Z

fn read(text: &str) -> Result<Trace, TraceError> {
    Trace::parse("t.csv", text, TraceFormat::Auto)
}

#[test]
fn timestamps_are_counted_per_minute_and_kept_exact() {
    let trace =
        read("timestamp\n2026-01-05T09:00:01Z\n2026-01-05T09:00:59.5Z\n\n# a comment\n2026-01-05T09:02:00Z\n").unwrap();
    assert_eq!(trace.start_ms, MONDAY_9);
    assert_eq!(trace.per_minute, vec![2, 0, 1]);
    assert_eq!(trace.exact, Some(vec![1_000, 59_500, 120_000]));
    assert!(trace.notes.is_empty(), "{:?}", trace.notes);
}

#[test]
fn per_minute_counts_fill_absent_minutes_with_zero_and_say_so() {
    let trace = read("minute,count\n2026-01-05T09:00:00Z,5\n2026-01-05T09:03:00Z,7\n").unwrap();
    assert_eq!(trace.per_minute, vec![5, 0, 0, 7]);
    assert_eq!(trace.exact, None);
    assert_eq!(
        trace.notes,
        vec!["2 minutes absent from the trace were counted as 0 requests"]
    );
}

#[test]
fn a_cloudwatch_export_sums_pool_and_fresh_claims_per_minute() {
    let export = r#"{
  "MetricDataResults": [
    {
      "Id": "pool",
      "Label": "ClaimFromPool",
      "Timestamps": ["2026-01-05T09:01:00+00:00", "2026-01-05T09:00:00+00:00"],
      "Values": [30.0, 12.0],
      "StatusCode": "Complete"
    },
    {
      "Id": "fresh",
      "Label": "ClaimFresh",
      "Timestamps": ["2026-01-05T09:01:00+00:00"],
      "Values": [2.0],
      "StatusCode": "Complete"
    }
  ],
  "Messages": []
}"#;
    let trace = read(export).unwrap();
    assert_eq!((trace.start_ms, trace.per_minute.clone()), (MONDAY_9, vec![12, 32]));
    assert_eq!(trace.notes[0], "summed per minute: ClaimFromPool + ClaimFresh");
}

#[test]
fn malformed_traces_are_refused_with_the_line_and_the_reason() {
    let cases: [(&str, usize, &str); 9] = [
        ("", 1, "empty"),
        ("2026-01-05T09:00:00Z\nnot a time\n", 2, "not a UTC time"),
        ("2026-01-05T09:00:00Z\n2026-01-05T09:00:01Z,4\n", 2, "2 fields"),
        (
            "minute,count\n2026-01-05T09:00:00Z,5\n2026-01-05T09:01:00Z,-1\n",
            3,
            "not a whole number",
        ),
        (
            "minute,count\n2026-01-05T09:00:00Z,5\n2026-01-05T09:00:30Z,1\n",
            3,
            "whole minute",
        ),
        (
            "minute,count\n2026-01-05T09:01:00Z,5\n2026-01-05T09:00:00Z,1\n",
            3,
            "out of order",
        ),
        ("a,b,c\n1,2,3\n", 2, "3 fields"),
        ("minute,count\n2026-01-05T09:00:00Z,0\n", 1, "no request"),
        (
            "{\"MetricDataResults\": [\n {\"Label\": \"ClaimFromPool\",\n  \"Timestamps\": [\"2026-01-05T09:00:00Z\"],\n  \"Values\": [1, 2]}]}",
            3,
            "1 timestamps and 2 values",
        ),
    ];
    for (text, line, why) in cases {
        let error = read(text).expect_err(text);
        assert_eq!(error.line, line, "{text:?}: {error}");
        assert!(error.reason.contains(why), "{text:?}: {error}");
    }
    let broken = read("{\"MetricDataResults\": [\n  {\"Label\": 3,,}]}").unwrap_err();
    assert_eq!(broken.line, 2, "{broken}");
    assert!(broken.to_string().starts_with("t.csv, line 2: not JSON"), "{broken}");
}

#[test]
fn a_trace_longer_than_five_weeks_is_refused() {
    let text = format!(
        "2026-01-05T09:00:00Z\n{}\n",
        super::format_instant(MONDAY_9 + 36 * 86_400_000)
    );
    let error = read(&text).unwrap_err();
    assert_eq!(error.line, 2);
    assert!(error.reason.contains("more than 35 days"), "{error}");
}
