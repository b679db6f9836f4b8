//! Traffic traces, read strictly: a CSV of request timestamps, a CSV of requests per minute,
//! or a CloudWatch `get-metric-data` export of get-session's claims (`ClaimFromPool` and
//! `ClaimFresh`, summed per minute). A line that is not what its format wants is an error
//! that names the line and says why; nothing is skipped or guessed. What the reading did
//! decide (minutes absent from a per-minute trace or an export count as 0, timestamps out of
//! order are put in order) is said in the trace's notes.

use super::time::{format_instant, parse_instant};
use crate::{Profile, Shape};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

const MINUTE_MS: u64 = 60_000;
/// Longest trace read: five weeks, so the hour-of-week fit sees each hour a few times.
pub const MAX_TRACE: Duration = Duration::from_secs(35 * 24 * 3_600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TraceFormat {
    /// Told apart by the content: a JSON document is an export, one field a line are
    /// timestamps, two are minutes and counts.
    #[default]
    Auto,
    Timestamps,
    PerMinute,
    Cloudwatch,
}

/// Why a trace could not be read; `line` counts from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}, line {line}: {reason}")]
pub struct TraceError {
    pub source_name: String,
    pub line: usize,
    pub reason: String,
}

/// Requests per minute from `start_ms`, the first minute of the trace (UTC, whole minute).
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub name: String,
    pub start_ms: u64,
    pub per_minute: Vec<u32>,
    /// The requests' own offsets from `start_ms` (milliseconds, in order), for a timestamp trace.
    pub exact: Option<Vec<u64>>,
    pub notes: Vec<String>,
}

impl Trace {
    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.per_minute.len() as u64 * 60)
    }

    pub fn requests(&self) -> u64 {
        self.per_minute.iter().map(|c| u64::from(*c)).sum()
    }

    /// The trace as a simulation profile at the account's creation quota.
    pub fn profile(&self, creation_quota: u32) -> Profile {
        Profile {
            name: self.name.clone(),
            duration: self.duration(),
            shape: Shape::PerMinute {
                counts: self.per_minute.clone().into(),
                exact: self.exact.clone().map(Arc::from),
            },
            creation_quota,
        }
    }

    /// A trace of a built-in profile's rates, minute by minute, starting on `start_ms`.
    pub fn of_profile(profile: &Profile, start_ms: u64) -> Self {
        let minutes = profile.duration.as_secs().div_ceil(60);
        let per_minute = (0..minutes)
            .map(|m| warmpool_core::num::round_u32(profile.rate_at(m * MINUTE_MS + 30_000) * 60.0))
            .collect();
        Self {
            name: profile.name.clone(),
            start_ms,
            per_minute,
            exact: None,
            notes: vec![format!(
                "built-in profile {:?}, from {}",
                profile.name,
                format_instant(start_ms)
            )],
        }
    }

    /// Reads `text` (from `name`, for the messages) in `format`.
    pub fn parse(name: &str, text: &str, format: TraceFormat) -> Result<Self, TraceError> {
        let fail = |line: usize, reason: String| TraceError {
            source_name: name.to_string(),
            line,
            reason,
        };
        let format = match format {
            TraceFormat::Auto => detect(text).map_err(|(line, why)| fail(line, why))?,
            given => given,
        };
        let trace = match format {
            TraceFormat::Cloudwatch => cloudwatch(text),
            TraceFormat::PerMinute => per_minute(text),
            TraceFormat::Timestamps | TraceFormat::Auto => timestamps(text),
        }
        .map_err(|(line, why)| fail(line, why))?;
        let (start_ms, per_minute, exact, notes) = trace;
        if per_minute.iter().all(|c| *c == 0) {
            return Err(fail(1, "the trace holds no request".into()));
        }
        if per_minute.len() as u64 * MINUTE_MS > warmpool_core::clock::millis(MAX_TRACE) {
            return Err(fail(
                1,
                format!("the trace spans more than {} days", MAX_TRACE.as_secs() / 86_400),
            ));
        }
        Ok(Self {
            name: name.to_string(),
            start_ms,
            per_minute,
            exact,
            notes,
        })
    }
}

type Parsed = (u64, Vec<u32>, Option<Vec<u64>>, Vec<String>);
type Failure = (usize, String);

/// The data lines: number from 1, without blank lines and `#` comments.
fn data_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

fn fields(line: &str) -> Vec<&str> {
    line.split(',').map(str::trim).collect()
}

/// A first line whose first field is no instant is the header.
fn is_header(line: &str) -> bool {
    fields(line).first().is_some_and(|f| parse_instant(f).is_err())
}

fn detect(text: &str) -> Result<TraceFormat, Failure> {
    if text.trim_start().starts_with('{') {
        return Ok(TraceFormat::Cloudwatch);
    }
    let mut lines = data_lines(text);
    let Some((n, first)) = lines.next() else {
        return Err((1, "the trace is empty".into()));
    };
    let (n, line) = if is_header(first) {
        lines.next().ok_or((n, "only a header, no data".to_string()))?
    } else {
        (n, first)
    };
    match fields(line).len() {
        1 => Ok(TraceFormat::Timestamps),
        2 => Ok(TraceFormat::PerMinute),
        k => Err((n, format!("{k} fields: expected a timestamp, or a minute and a count"))),
    }
}

/// Counts per minute from sorted instants, as `start_ms` and the counts.
fn bucket(instants: &[u64]) -> (u64, Vec<u32>) {
    let start = instants.first().map_or(0, |t| t - t % MINUTE_MS);
    let minutes = instants.last().map_or(0, |t| (t - start) / MINUTE_MS + 1);
    let mut counts = vec![0_u32; usize::try_from(minutes).unwrap_or(0)];
    for t in instants {
        if let Some(c) = counts.get_mut(usize::try_from((t - start) / MINUTE_MS).unwrap_or(usize::MAX)) {
            *c = c.saturating_add(1);
        }
    }
    (start, counts)
}

fn timestamps(text: &str) -> Result<Parsed, Failure> {
    let mut instants = Vec::new();
    let mut notes = Vec::new();
    let mut out_of_order = 0_u64;
    for (i, (n, line)) in data_lines(text).enumerate() {
        if i == 0 && is_header(line) {
            continue;
        }
        let f = fields(line);
        if f.len() != 1 {
            return Err((n, format!("{} fields: a timestamp trace has one a line", f.len())));
        }
        let at = parse_instant(f[0]).map_err(|why| (n, why))?;
        if instants.last().is_some_and(|last| at < *last) {
            out_of_order += 1;
        }
        instants.push(at);
        check_span(&instants, n)?;
    }
    if instants.is_empty() {
        return Err((1, "no timestamp in the trace".into()));
    }
    if out_of_order > 0 {
        notes.push(format!(
            "{out_of_order} timestamps were out of order and were put in order"
        ));
        instants.sort_unstable();
    }
    let (start, counts) = bucket(&instants);
    let exact = instants.iter().map(|t| t - start).collect();
    Ok((start, counts, Some(exact), notes))
}

/// Refuses a trace past [`MAX_TRACE`] as soon as it gets there, before it fills memory.
fn check_span(instants: &[u64], line: usize) -> Result<(), Failure> {
    let (Some(first), Some(last)) = (instants.first(), instants.last()) else {
        return Ok(());
    };
    if last.abs_diff(*first) > warmpool_core::clock::millis(MAX_TRACE) {
        return Err((
            line,
            format!("the trace spans more than {} days", MAX_TRACE.as_secs() / 86_400),
        ));
    }
    Ok(())
}

/// Whole minutes and their counts into one series; absent minutes count 0 (noted).
fn minutes_to_series(minutes: &[(usize, u64, u32)]) -> Result<Parsed, Failure> {
    let Some(&(_, start, _)) = minutes.first() else {
        return Err((1, "no minute in the trace".into()));
    };
    let mut counts: Vec<u32> = Vec::new();
    let mut absent = 0_u64;
    for &(n, at, count) in minutes {
        if at % MINUTE_MS != 0 {
            return Err((n, format!("{} is not on a whole minute", format_instant(at))));
        }
        let index = at.checked_sub(start).map_or(0, |d| d / MINUTE_MS);
        if at < start || index < counts.len() as u64 {
            return Err((n, format!("minute {} is out of order or repeated", format_instant(at))));
        }
        if index > warmpool_core::clock::millis(MAX_TRACE) / MINUTE_MS {
            return Err((
                n,
                format!("the trace spans more than {} days", MAX_TRACE.as_secs() / 86_400),
            ));
        }
        absent += index - counts.len() as u64;
        counts.resize(usize::try_from(index).unwrap_or(0), 0);
        counts.push(count);
    }
    let notes = if absent > 0 {
        vec![format!(
            "{absent} minutes absent from the trace were counted as 0 requests"
        )]
    } else {
        Vec::new()
    };
    Ok((start, counts, None, notes))
}

fn per_minute(text: &str) -> Result<Parsed, Failure> {
    let mut minutes = Vec::new();
    for (i, (n, line)) in data_lines(text).enumerate() {
        if i == 0 && is_header(line) {
            continue;
        }
        let f = fields(line);
        let [at, count] = f[..] else {
            return Err((n, format!("{} fields: expected `minute,count`", f.len())));
        };
        let at = parse_instant(at).map_err(|why| (n, why))?;
        let count = count
            .parse::<u32>()
            .map_err(|_| (n, format!("count {count:?} is not a whole number of requests")))?;
        minutes.push((n, at, count));
    }
    minutes_to_series(&minutes)
}

/// The line of `text` where the `nth` (from 0) occurrence of `needle` stands, else 1.
fn line_of(text: &str, needle: &str, nth: usize) -> usize {
    text.match_indices(needle)
        .nth(nth)
        .map_or(1, |(at, _)| text[..at].matches('\n').count() + 1)
}

fn cloudwatch(text: &str) -> Result<Parsed, Failure> {
    let doc: Value = serde_json::from_str(text).map_err(|e| (e.line().max(1), format!("not JSON: {e}")))?;
    let results = doc.get("MetricDataResults").and_then(Value::as_array).ok_or((
        1,
        "no MetricDataResults list (the output of aws cloudwatch get-metric-data)".to_string(),
    ))?;
    if results.is_empty() {
        return Err((
            line_of(text, "MetricDataResults", 0),
            "MetricDataResults is empty".into(),
        ));
    }
    let mut sums: std::collections::BTreeMap<u64, (usize, f64)> = std::collections::BTreeMap::new();
    let mut labels = Vec::new();
    for (r, result) in results.iter().enumerate() {
        let at_result = line_of(text, "\"Timestamps\"", r);
        let label = result
            .get("Label")
            .or_else(|| result.get("Id"))
            .and_then(Value::as_str)
            .unwrap_or("?");
        labels.push(label.to_string());
        let (Some(stamps), Some(values)) = (
            result.get("Timestamps").and_then(Value::as_array),
            result.get("Values").and_then(Value::as_array),
        ) else {
            return Err((at_result, format!("result {label:?} lacks Timestamps or Values")));
        };
        if stamps.len() != values.len() {
            return Err((
                at_result,
                format!(
                    "result {label:?} has {} timestamps and {} values",
                    stamps.len(),
                    values.len()
                ),
            ));
        }
        for (stamp, value) in stamps.iter().zip(values) {
            let raw = stamp.as_str().unwrap_or_default();
            let line = line_of(text, raw, 0);
            let at = parse_instant(raw).map_err(|why| (line, why))?;
            let value = value
                .as_f64()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| (line, format!("the value at {raw} is not a count of claims")))?;
            let entry = sums.entry(at).or_insert((line, 0.0));
            entry.1 += value;
        }
    }
    let minutes: Vec<(usize, u64, u32)> = sums
        .into_iter()
        .map(|(at, (line, sum))| (line, at, warmpool_core::num::round_u32(sum)))
        .collect();
    let (start, counts, exact, mut notes) = minutes_to_series(&minutes)?;
    notes.insert(0, format!("summed per minute: {}", labels.join(" + ")));
    Ok((start, counts, exact, notes))
}

#[cfg(test)]
mod tests;
