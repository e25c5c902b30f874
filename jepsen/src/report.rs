//! The run's outputs beside `history.jsonl`: `results.json` (the checker's verdict
//! plus the run's parameters, faults, liveness and process exits) and `report.html`,
//! a page with Jepsen-style graphs — every operation's latency over time and the
//! throughput per outcome — with the fault windows shaded, as inline SVG.
//!
//! Rendering is a pure function of the history and the results, so it is tested on
//! hand-made histories.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use plotters::prelude::*;
use serde_json::{Value as Json, json};

use crate::checker::{CheckResult, Class, FaultWindow};
use crate::history::{History, OpType, Process};

pub const PLOT_WIDTH: u32 = 1100;
pub const PLOT_HEIGHT: u32 = 380;
/// Throughput buckets across the run (at least one second each).
pub const THROUGHPUT_BUCKETS_MAX: usize = 200;
/// Points drawn in the latency plot; a longer history is sampled evenly.
pub const LATENCY_POINTS_MAX: usize = 50_000;
/// Opacity of a shaded fault window.
pub const WINDOW_OPACITY: f64 = 0.2;

/// The colour a fault kind's windows are shaded with.
pub fn fault_color(fault: &str) -> RGBColor {
    match fault {
        "kill" => RGBColor(0xE4, 0x1A, 0x1C),
        "pause" => RGBColor(0x4D, 0xAF, 0x4A),
        "partition" => RGBColor(0x98, 0x4E, 0xA3),
        "failpoint" => RGBColor(0xA6, 0x56, 0x28),
        _ => RGBColor(0x99, 0x99, 0x99),
    }
}

fn outcome_color(kind: OpType) -> RGBColor {
    match kind {
        OpType::Ok => RGBColor(0x00, 0x72, 0xB2),
        OpType::Info => RGBColor(0xE6, 0x9F, 0x00),
        OpType::Fail | OpType::Invoke => RGBColor(0xD4, 0x11, 0x59),
    }
}

const OUTCOMES: [(OpType, &str); 3] =
    [(OpType::Ok, "ok"), (OpType::Info, "info"), (OpType::Fail, "fail")];

/// Builds results.json: the checker's result at the top level (as `xo-jepsen check`
/// writes it), with `valid` now the run's overall verdict, the checker's own in
/// `checker_valid`, and `extra`'s keys added.
pub fn results_json(check: &CheckResult, valid: bool, extra: Json) -> Json {
    let mut results = serde_json::to_value(check).expect("check results serialise");
    let object = results.as_object_mut().expect("an object");
    object.insert("checker_valid".into(), json!(check.valid));
    object.insert("valid".into(), json!(valid));
    if let Json::Object(extra) = extra {
        for (k, v) in extra {
            object.insert(k, v);
        }
    }
    results
}

/// One client operation as plotted: (invoke s, latency ms, outcome).
fn samples(history: &History) -> Vec<(f64, f64, OpType)> {
    let Ok(ops) = history.operations() else { return Vec::new() };
    let mut points: Vec<(f64, f64, OpType)> = ops
        .iter()
        .filter_map(|op| {
            let latency = op.latency_ns()?;
            Some((op.invoke.time_ns as f64 / 1e9, latency as f64 / 1e6, op.outcome()))
        })
        .collect();
    if points.len() > LATENCY_POINTS_MAX {
        let step = points.len().div_ceil(LATENCY_POINTS_MAX);
        points = points.into_iter().step_by(step).collect();
    }
    points
}

fn end_s(history: &History) -> f64 {
    (history.ops.last().map_or(0, |op| op.time_ns) as f64 / 1e9).max(1.0)
}

/// Windows as (start s, end s, fault) with unfinished ones running to the end.
fn windows_s(windows: &[FaultWindow], end: f64) -> Vec<(f64, f64, String)> {
    windows
        .iter()
        .map(|w| {
            let start = w.start_ns as f64 / 1e9;
            let stop = w.end_ns.map_or(end, |ns| ns as f64 / 1e9).max(start + 0.01);
            (start, stop, w.fault.clone())
        })
        .collect()
}

fn draw_windows<DB: DrawingBackend, Y: plotters::coord::ranged1d::Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    windows: &[(f64, f64, String)],
    y: (f64, f64),
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let mut by_fault: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for (start, stop, fault) in windows {
        by_fault.entry(fault).or_default().push((*start, *stop));
    }
    for (fault, spans) in by_fault {
        let color = fault_color(fault);
        chart
            .draw_series(spans.into_iter().map(|(a, b)| {
                Rectangle::new([(a, y.0), (b, y.1)], color.mix(WINDOW_OPACITY).filled())
            }))?
            .label(fault.to_string())
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.mix(0.4).filled())
            });
    }
    Ok(())
}

/// Every operation's latency (log scale) at its invocation time.
pub fn latency_svg(history: &History, windows: &[FaultWindow]) -> String {
    let mut svg = String::new();
    let points = samples(history);
    let end = end_s(history);
    let windows = windows_s(windows, end);
    let max_ms = points.iter().map(|p| p.1).fold(1.0f64, f64::max) * 2.0;
    let min_ms = points.iter().map(|p| p.1).fold(max_ms, f64::min).clamp(0.001, 1.0) / 2.0;
    let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut svg, (PLOT_WIDTH, PLOT_HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Latency of every operation (by invocation time)", ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..end, (min_ms..max_ms).log_scale())?;
        chart
            .configure_mesh()
            .light_line_style(RGBColor(0xEE, 0xEE, 0xEE))
            .x_desc("time (s)")
            .y_desc("latency (ms)")
            .draw()?;
        draw_windows(&mut chart, &windows, (min_ms, max_ms))?;
        for (kind, name) in OUTCOMES {
            let color = outcome_color(kind);
            chart
                .draw_series(
                    points
                        .iter()
                        .filter(|p| p.2 == kind)
                        .map(|p| Circle::new((p.0, p.1.max(min_ms)), 2, color.filled())),
                )?
                .label(name)
                .legend(move |(x, y)| Circle::new((x + 6, y), 3, color.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    })();
    if let Err(e) = drawn {
        return format!("<p>latency plot failed: {}</p>", escape(&e.to_string()));
    }
    svg
}

/// Completions per second, per outcome.
pub fn throughput_svg(history: &History, windows: &[FaultWindow]) -> String {
    let mut svg = String::new();
    let end = end_s(history);
    let windows = windows_s(windows, end);
    let bucket_s = (end / THROUGHPUT_BUCKETS_MAX as f64).max(1.0);
    let buckets = ((end / bucket_s).ceil() as usize).max(1);
    // The last bucket may be shorter than the others: divide by its real width.
    let width = |i: usize| (end - i as f64 * bucket_s).clamp(0.001, bucket_s);
    let mut counts: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for op in &history.ops {
        if matches!(op.process, Process::Nemesis) || op.kind == OpType::Invoke {
            continue;
        }
        let Some((_, name)) = OUTCOMES.iter().find(|(k, _)| *k == op.kind) else { continue };
        let bucket = ((op.time_ns as f64 / 1e9) / bucket_s) as usize;
        counts.entry(name).or_insert_with(|| vec![0.0; buckets])[bucket.min(buckets - 1)] += 1.0;
    }
    for series in counts.values_mut() {
        for (i, count) in series.iter_mut().enumerate() {
            *count /= width(i);
        }
    }
    let max_rate = counts.values().flatten().copied().fold(1.0f64, f64::max) * 1.15;
    let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut svg, (PLOT_WIDTH, PLOT_HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Throughput (completions per second)", ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..end, 0f64..max_rate)?;
        chart
            .configure_mesh()
            .light_line_style(RGBColor(0xEE, 0xEE, 0xEE))
            .x_desc("time (s)")
            .y_desc("ops/s")
            .draw()?;
        draw_windows(&mut chart, &windows, (0.0, max_rate))?;
        for (kind, name) in OUTCOMES {
            let Some(series) = counts.get(name) else { continue };
            let color = outcome_color(kind);
            chart
                .draw_series(LineSeries::new(
                    series
                        .iter()
                        .enumerate()
                        .map(|(i, r)| (i as f64 * bucket_s + width(i) / 2.0, *r)),
                    color.stroke_width(2),
                ))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 12, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    })();
    if let Err(e) = drawn {
        return format!("<p>throughput plot failed: {}</p>", escape(&e.to_string()));
    }
    svg
}

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn ms(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1e6)
}

/// The whole page. `results` is what results.json holds.
pub fn render_html(history: &History, check: &CheckResult, results: &Json) -> String {
    let valid = results["valid"].as_bool().unwrap_or(false);
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>xo-jepsen report</title>\n\
         <style>body{{font-family:sans-serif;margin:2em;max-width:1150px}}\
         table{{border-collapse:collapse;margin:0.5em 0 1.5em}}\
         td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left;font-size:14px}}\
         .valid{{color:#1a7f37}}.invalid{{color:#cf222e}}pre{{background:#f6f8fa;padding:8px;overflow:auto}}\
         </style></head><body>\n<h1>xo-jepsen: <span class=\"{}\">{}</span></h1>\n",
        if valid { "valid" } else { "invalid" },
        if valid { "VALID" } else { "INVALID" }
    );
    if let Some(problems) = results["problems"].as_array().filter(|p| !p.is_empty()) {
        html.push_str("<ul>");
        for p in problems {
            let _ = write!(html, "<li>{}</li>", escape(p.as_str().unwrap_or_default()));
        }
        html.push_str("</ul>\n");
    }
    if let Some(run) = results["run"].as_object() {
        html.push_str("<h2>Run</h2><table>");
        for (k, v) in run {
            let text = match v {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            let _ = write!(html, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(&text));
        }
        html.push_str("</table>\n");
    }
    html.push_str("<h2>Timeline</h2>\n");
    html.push_str(&latency_svg(history, &check.stats.faults));
    html.push('\n');
    html.push_str(&throughput_svg(history, &check.stats.faults));
    html.push('\n');

    let s = &check.stats;
    let _ = writeln!(
        html,
        "<h2>Operations</h2><table><tr><th>ops</th><th>ok</th><th>fail</th><th>info</th>\
         <th>keys</th><th>final polls</th><th>records</th></tr>\
         <tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        s.ops, s.ok, s.fail, s.info, s.keys, s.final_polls, s.records
    );
    html.push_str("<h3>Latency of ok operations (ms)</h3><table><tr><th>f</th><th>count</th><th>p50</th><th>p95</th><th>p99</th><th>max</th></tr>");
    let all = s.latency_ns.iter().map(|l| ("all".to_string(), l));
    for (f, l) in all.chain(s.latency_ns_by_f.iter().map(|(f, l)| (f.clone(), l))) {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&f),
            l.count,
            ms(l.p50),
            ms(l.p95),
            ms(l.p99),
            ms(l.max)
        );
    }
    html.push_str(
        "</table>\n<h2>Anomalies</h2><table><tr><th>class</th><th>count</th><th>meaning</th></tr>",
    );
    for class in Class::ALL {
        let count = check.count(class);
        let style = if count > 0 { " class=\"invalid\"" } else { "" };
        let _ = write!(
            html,
            "<tr{style}><td>{}</td><td>{count}</td><td>{}</td></tr>",
            class.name(),
            escape(class.meaning())
        );
    }
    html.push_str("</table>\n");
    const EXAMPLES_MAX: usize = 10;
    for class in check.classes_found() {
        let _ = write!(html, "<h3>{}</h3><ul>", class.name());
        for anomaly in check.of(class).iter().take(EXAMPLES_MAX) {
            let _ =
                write!(html, "<li>ops {:?}: {}</li>", anomaly.ops, escape(&anomaly.explanation));
        }
        html.push_str("</ul>\n");
    }
    for note in &s.notes {
        let _ = write!(html, "<p>note: {}</p>", escape(note));
    }
    if !results["liveness"].is_null() {
        let _ = writeln!(
            html,
            "<h2>Liveness after heal</h2><pre>{}</pre>",
            escape(&serde_json::to_string_pretty(&results["liveness"]).unwrap_or_default())
        );
    }
    html.push_str("<h2>Faults</h2><table><tr><th>fault</th><th>start (s)</th><th>end (s)</th><th>what</th></tr>");
    let faults = results["nemesis"]["faults"].as_array().cloned().unwrap_or_default();
    if faults.is_empty() {
        for w in &s.faults {
            let end = w.end_ns.map_or("-".to_string(), |ns| format!("{:.2}", ns as f64 / 1e9));
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{:.2}</td><td>{end}</td><td></td></tr>",
                escape(&w.fault),
                w.start_ns as f64 / 1e9
            );
        }
    }
    for f in &faults {
        let secs =
            |v: &Json| v.as_u64().map_or("-".to_string(), |ms| format!("{:.2}", ms as f64 / 1e3));
        let what = json!({"fault": f["fault"], "started": f["started"], "stopped": f["stopped"]});
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            escape(f["kind"].as_str().unwrap_or("?")),
            secs(&f["start_ms"]),
            secs(&f["stop_ms"]),
            escape(&what.to_string())
        );
    }
    html.push_str("</table>\n");
    if let Some(exits) = results["process_exits"].as_array().filter(|e| !e.is_empty()) {
        html.push_str("<h2>Process exits</h2><table><tr><th>node</th><th>at (s)</th><th>cause</th><th>status</th></tr>");
        for e in exits {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td></tr>",
                escape(e["node"].as_str().unwrap_or("?")),
                e["at_ms"].as_f64().unwrap_or(0.0) / 1e3,
                escape(e["cause"].as_str().unwrap_or("?")),
                escape(e["status"].as_str().unwrap_or("?"))
            );
        }
        html.push_str("</table>\n");
    }
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker;
    use crate::history::{F, HistoryBuilder, poll, send};

    fn tiny() -> History {
        let mut h = HistoryBuilder::new();
        h.ok(0, F::Send, &[send("t0/0", 0, 1)]);
        h.nemesis("start-kill");
        h.ok(1, F::Send, &[send("t0/0", 1, 2)]);
        h.info(0, F::Send, &[send("t0/0", 2, 3)]);
        h.nemesis("stop-kill");
        h.nemesis("start-partition");
        h.fail(2, F::Send, &[send("t0/0", 3, 4)]);
        h.ok(1, F::FinalPoll, &[poll(&[("t0/0", &[(0, 1), (1, 2), (2, 3)])])]);
        h.build()
    }

    // Proves the page holds both plots as inline SVG with each fault kind's windows
    // shaded in its colour, including a window never stopped.
    #[test]
    fn report_has_svg_with_shaded_fault_windows() {
        let history = tiny();
        let check = checker::check(&history).unwrap();
        assert_eq!(check.stats.faults.len(), 2);
        let results = results_json(&check, check.valid, json!({"run": {"seed": 1}}));
        let html = render_html(&history, &check, &results);
        assert_eq!(html.matches("<svg").count(), 2, "latency and throughput plots");
        for fault in ["kill", "partition"] {
            let c = fault_color(fault);
            let fill = format!("fill=\"#{:02X}{:02X}{:02X}\"", c.0, c.1, c.2);
            let shaded = html
                .lines()
                .filter(|l| l.contains("<rect") && l.contains(&fill) && l.contains("opacity=\"0.2"))
                .count();
            assert!(shaded >= 2, "{fault} shaded in both plots: {shaded}");
        }
        assert!(html.contains("<circle"), "operations are drawn as points");
        assert!(html.contains("<polyline"), "throughput is drawn as lines");
        assert!(html.contains("VALID"));
    }

    // Proves results.json keeps the checker's fields, adds the run's, and carries the
    // overall verdict separately from the checker's.
    #[test]
    fn results_json_overrides_validity_and_keeps_counts() {
        let history = tiny();
        let check = checker::check(&history).unwrap();
        let results = results_json(&check, false, json!({"liveness": {"ok": false}}));
        assert_eq!(results["valid"], json!(false));
        assert_eq!(results["checker_valid"], json!(check.valid));
        assert_eq!(results["anomaly_counts"]["lost-write"], json!(0));
        assert_eq!(results["liveness"]["ok"], json!(false));
        assert!(results["faults"].as_array().unwrap().len() == 2);
        assert!(results["latency_ns"]["p50"].is_u64());
    }
}
