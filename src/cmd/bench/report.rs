//! The comparison's outputs, as pure functions of the workloads' JSON
//! lines: result rows (one measured number of one workload in one
//! durability mode, xo beside Kafka, ratio xo/Kafka), the markdown table,
//! the machine-limits section, and the SVG bar charts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use plotters::prelude::*;
use serde_json::{Value, json};

/// Which way a number is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    /// Throughput.
    Higher,
    /// Latency.
    Lower,
}

impl Better {
    pub fn word(self) -> &'static str {
        match self {
            Better::Higher => "higher",
            Better::Lower => "lower",
        }
    }
}

/// A number the comparison reports: `field` of the line of suite workload
/// `workload`, shown as `label` in `unit`.
pub struct Metric {
    pub workload: &'static str,
    pub field: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub better: Better,
}

const fn metric(
    workload: &'static str,
    field: &'static str,
    label: &'static str,
    unit: &'static str,
    better: Better,
) -> Metric {
    Metric { workload, field, label, unit, better }
}

/// Every reported number, in table order.
pub const METRICS: &[Metric] = &[
    metric("produce_plain", "mb_per_s", "produce_plain", "MB/s", Better::Higher),
    metric("produce_idempotent", "mb_per_s", "produce_idempotent", "MB/s", Better::Higher),
    metric("produce_txn_1", "mb_per_s", "produce_txn_1", "MB/s", Better::Higher),
    metric("produce_txn_10", "mb_per_s", "produce_txn_10", "MB/s", Better::Higher),
    metric("produce_txn_100", "mb_per_s", "produce_txn_100", "MB/s", Better::Higher),
    metric("produce_txn_1000", "mb_per_s", "produce_txn_1000", "MB/s", Better::Higher),
    metric("commit_latency", "commit_p50_ms", "commit_latency p50", "ms", Better::Lower),
    metric("commit_latency", "commit_p99_ms", "commit_latency p99", "ms", Better::Lower),
    metric("commit_latency", "commit_p999_ms", "commit_latency p99.9", "ms", Better::Lower),
    metric("commit_latency", "txn_per_s", "commit_latency txns", "txn/s", Better::Higher),
    metric("e2e_latency", "e2e_p50_ms", "e2e_latency p50", "ms", Better::Lower),
    metric("e2e_latency", "e2e_p99_ms", "e2e_latency p99", "ms", Better::Lower),
    metric("tiny_txn", "txn_per_s", "tiny_txn", "txn/s", Better::Higher),
    metric("consume", "mb_per_s", "consume", "MB/s", Better::Higher),
];

/// One row of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub name: String,
    pub durability: String,
    pub unit: String,
    pub xo: Option<f64>,
    pub kafka: Option<f64>,
    /// xo / Kafka, when both were measured.
    pub ratio: Option<f64>,
    pub better: Better,
    /// "truncated", "saturated" or a failure, per side.
    pub notes: Vec<String>,
}

impl Row {
    pub fn new(
        name: &str,
        durability: &str,
        unit: &str,
        xo: Option<f64>,
        kafka: Option<f64>,
        better: Better,
    ) -> Row {
        let ratio = match (xo, kafka) {
            (Some(x), Some(k)) if k > 0.0 && x.is_finite() && k.is_finite() => Some(x / k),
            _ => None,
        };
        Row {
            name: name.to_string(),
            durability: durability.to_string(),
            unit: unit.to_string(),
            xo,
            kafka,
            ratio,
            better,
            notes: Vec::new(),
        }
    }

    /// The row as results.json has it.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name, "durability": self.durability, "unit": self.unit,
            "xo": self.xo, "kafka": self.kafka, "ratio": self.ratio,
            "better": self.better.word(), "xo_ahead": self.xo_ahead(), "notes": self.notes,
        })
    }

    /// Whether xo did better than Kafka on this row (`None` without both).
    pub fn xo_ahead(&self) -> Option<bool> {
        let ratio = self.ratio?;
        Some(match self.better {
            Better::Higher => ratio > 1.0,
            Better::Lower => ratio < 1.0,
        })
    }

    /// How many times better xo is (above 1) or worse (below 1), whichever
    /// way the metric counts.
    pub fn advantage(&self) -> Option<f64> {
        let ratio = self.ratio?;
        match self.better {
            Better::Higher => Some(ratio),
            Better::Lower if ratio > 0.0 => Some(1.0 / ratio),
            Better::Lower => None,
        }
    }
}

/// A line's number `field`, if the line is there and says `"ok":true`.
fn value_of(line: Option<&Value>, field: &str) -> Option<f64> {
    let line = line?;
    if line.get("ok") != Some(&Value::Bool(true)) {
        return None;
    }
    line.get(field)?.as_f64()
}

fn notes_of(side: &str, line: Option<&Value>) -> Vec<String> {
    let Some(line) = line else { return vec![format!("{side}: not run")] };
    if line.get("ok") != Some(&Value::Bool(true)) {
        let error = line.get("error").and_then(Value::as_str).unwrap_or("failed");
        return vec![format!("{side} failed: {error}")];
    }
    ["truncated", "saturated"]
        .into_iter()
        .filter(|flag| line.get(*flag) == Some(&Value::Bool(true)))
        .map(|flag| format!("{side} {flag}"))
        .collect()
}

/// The rows of one durability mode from each side's lines by suite name.
pub fn rows(
    durability: &str,
    xo: &BTreeMap<String, Value>,
    kafka: &BTreeMap<String, Value>,
) -> Vec<Row> {
    let mut out = Vec::new();
    for m in METRICS {
        let (x, k) = (xo.get(m.workload), kafka.get(m.workload));
        if x.is_none() && k.is_none() {
            continue;
        }
        let mut row = Row::new(
            m.label,
            durability,
            m.unit,
            value_of(x, m.field),
            value_of(k, m.field),
            m.better,
        );
        // Notes once per workload: on its first row.
        if !out
            .iter()
            .any(|r: &Row| r.durability == durability && first_word(&r.name) == m.workload)
        {
            row.notes.extend(notes_of("xo", x));
            row.notes.extend(notes_of("kafka", k));
        }
        if m.field.contains("_p999_") {
            for (side, line) in [("xo", x), ("kafka", k)] {
                if let Some(n) = samples(m.workload, line).filter(|n| *n < P999_SAMPLES_MIN) {
                    row.notes.push(format!("{side}: p99.9 of {n} samples is their maximum"));
                }
            }
        }
        out.push(row);
    }
    out
}

/// Below this many samples a p99.9 is simply the largest one.
pub const P999_SAMPLES_MIN: u64 = 1000;

/// How many latencies a workload's line is over.
fn samples(workload: &str, line: Option<&Value>) -> Option<u64> {
    let field = match workload {
        "commit_latency" | "tiny_txn" => "txns",
        "e2e_latency" => "records",
        _ => return None,
    };
    line?.get(field)?.as_u64()
}

fn first_word(s: &str) -> &str {
    s.split(' ').next().unwrap_or(s)
}

/// A number as the table shows it: 3 significant digits, at least.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn cell(x: Option<f64>) -> String {
    x.map_or_else(|| "–".into(), fmt_num)
}

/// The markdown table of `rows`.
pub fn markdown_table(rows: &[Row]) -> String {
    let mut s = String::new();
    s.push_str("| durability | workload | unit | xo | Kafka | ratio xo/Kafka | better | xo ahead | notes |\n");
    s.push_str("| --- | --- | --- | ---: | ---: | ---: | --- | --- | --- |\n");
    for r in rows {
        let ahead = match r.xo_ahead() {
            Some(true) => format!("yes ({}×)", fmt_num(r.advantage().unwrap_or(f64::NAN))),
            Some(false) => format!("no ({}×)", fmt_num(r.advantage().unwrap_or(f64::NAN))),
            None => "–".into(),
        };
        let better = r.better.word();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.durability,
            r.name,
            r.unit,
            cell(r.xo),
            cell(r.kafka),
            r.ratio.map_or_else(|| "–".into(), |x| format!("{x:.2}")),
            better,
            ahead,
            r.notes.join("; ").replace('|', "/"),
        );
    }
    s
}

/// One comparison of an xo number with a machine ceiling.
#[derive(Clone, Debug, PartialEq)]
pub struct LimitRow {
    pub what: String,
    pub xo: f64,
    pub xo_unit: String,
    pub limit_name: String,
    pub limit: f64,
    pub limit_unit: String,
    /// xo / limit.
    pub fraction: f64,
}

impl LimitRow {
    pub fn to_json(&self) -> Value {
        json!({
            "what": self.what, "xo": self.xo, "xo_unit": self.xo_unit, "limit_name": self.limit_name,
            "limit": self.limit, "limit_unit": self.limit_unit, "fraction": self.fraction,
        })
    }
}

/// xo's produce throughput (plain and idempotent) against the loopback
/// ceiling (page-cache mode, where the disk is not in the way), and xo's
/// fsync-mode transaction rates against the raw fsync rate.
pub fn limit_rows(rows: &[Row], limits: &Value) -> Vec<LimitRow> {
    let mut out = Vec::new();
    let limit = |key: &str| limits.get(key).and_then(Value::as_f64).filter(|x| *x > 0.0);
    if let Some(loopback) = limit("loopback_mb_per_s") {
        let untransacted = |r: &&Row| r.name == "produce_plain" || r.name == "produce_idempotent";
        for r in rows.iter().filter(|r| r.durability == "page-cache").filter(untransacted) {
            if let Some(xo) = r.xo {
                out.push(LimitRow {
                    what: format!("{} ({})", r.name, r.durability),
                    xo,
                    xo_unit: r.unit.clone(),
                    limit_name: "loopback TCP, one stream".into(),
                    limit: loopback,
                    limit_unit: "MB/s".into(),
                    fraction: xo / loopback,
                });
            }
        }
    }
    // The partition servers call fdatasync, the limits probe both.
    for (key, call) in [("fsync_per_s", "fsync"), ("fdatasync_per_s", "fdatasync")] {
        let Some(per_s) = limit(key) else { continue };
        for r in rows.iter().filter(|r| r.durability == "fsync" && r.unit == "txn/s") {
            if let Some(xo) = r.xo {
                out.push(LimitRow {
                    what: format!("{} ({})", r.name, r.durability),
                    xo,
                    xo_unit: r.unit.clone(),
                    limit_name: format!("append 4 KiB + {call}, serial"),
                    limit: per_s,
                    limit_unit: format!("{call}/s"),
                    fraction: xo / per_s,
                });
            }
        }
    }
    out
}

pub fn limits_table(rows: &[LimitRow]) -> String {
    let mut s = String::from("| xo measure | xo | machine limit | limit | xo / limit |\n");
    s.push_str("| --- | ---: | --- | ---: | ---: |\n");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} {} | {} | {} {} | {:.3} |",
            r.what,
            fmt_num(r.xo),
            r.xo_unit,
            r.limit_name,
            fmt_num(r.limit),
            r.limit_unit,
            r.fraction
        );
    }
    s
}

/// The whole results.md.
pub fn markdown(results: &Value, rows: &[Row], limit_rows: &[LimitRow]) -> String {
    let mut s = String::from("# xo beside Apache Kafka\n\n");
    let machine = &results["machine"];
    let get = |v: &Value, k: &str| match &v[k] {
        Value::Null => "?".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let _ = writeln!(
        s,
        "Run {} ({}), xo {} ({}), Kafka {}, Java {}.\n",
        get(machine, "date"),
        if machine["quick"] == json!(true) { "--quick" } else { "full sizes" },
        get(machine, "xo_version"),
        get(machine, "xo_git"),
        get(machine, "kafka_version"),
        get(machine, "java_version"),
    );
    let _ = writeln!(
        s,
        "Machine: {}, {} cores, {} GiB RAM, Linux {}, data on {} ({}). Load average (1 min) {} at the start, {} at the end: \
         the machine is shared with other work (builds), so the figures are noisy; both systems ran \
         workload by workload, back to back, on the same box.\n",
        get(machine, "cpu_model"),
        get(machine, "cores"),
        get(machine, "mem_gib"),
        get(machine, "kernel"),
        get(&results["limits"], "data_fs"),
        get(&results["limits"], "data_dir"),
        get(machine, "load_avg_1m_start"),
        get(machine, "load_avg_1m_end"),
    );
    s.push_str(
        "Durability: page-cache = xo partition servers `--fsync never` vs Kafka's default (no flush on the \
         request path); fsync = xo `--fsync always` (group commit) vs Kafka `log.flush.interval.messages=1`. \
         xo ran as a coordinator and 3 partition servers (child processes), Kafka as one KRaft broker; \
         each benchmark client is a separate process from the servers.\n\n",
    );
    s.push_str(
        "ratio = xo / Kafka. For throughput (MB/s, txn/s) higher is better: a ratio above 1 means xo is ahead. \
         For latency (ms) lower is better: a ratio below 1 means xo is ahead. \"xo ahead\" gives the factor \
         either way.\n\n",
    );
    s.push_str(&markdown_table(rows));
    if !limit_rows.is_empty() {
        s.push_str("\n## Against the machine's limits (`bench/limits`)\n\n");
        s.push_str(&limits_table(limit_rows));
    }
    s.push_str("\nPlots: `throughput.svg`, `latency.svg`. Every workload's JSON lines are in `results.json` (`runs`).\n");
    s
}

pub const PLOT_WIDTH: u32 = 1000;
/// Pixels per row of a bar chart, and around it.
pub const PLOT_ROW_HEIGHT: u32 = 34;
pub const PLOT_MARGIN_HEIGHT: u32 = 110;
pub const XO_COLOR: RGBColor = RGBColor(0x00, 0x72, 0xB2);
pub const KAFKA_COLOR: RGBColor = RGBColor(0xE6, 0x9F, 0x00);

/// Horizontal bars, xo beside Kafka, for the rows `select` picks; x is
/// logarithmic so that MB/s, txn/s and ms of different sizes share it.
pub fn bars_svg(rows: &[Row], title: &str, x_desc: &str, select: impl Fn(&Row) -> bool) -> String {
    let picked: Vec<&Row> = rows.iter().filter(|r| select(r)).collect();
    let n = picked.len().max(1);
    let values = picked.iter().flat_map(|r| [r.xo, r.kafka]).flatten().filter(|v| *v > 0.0);
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo <= hi { (lo / 3.0, hi * 12.0) } else { (0.1, 10.0) };
    let labels: Vec<String> =
        picked.iter().map(|r| format!("{} · {} ({})", r.durability, r.name, r.unit)).collect();
    // Row i is drawn at y = n - 1 - i, so the first row is at the top.
    let y_of = |i: usize| (n - 1 - i) as f64;
    let mut svg = String::new();
    let height = PLOT_MARGIN_HEIGHT + PLOT_ROW_HEIGHT * n as u32;
    let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut svg, (PLOT_WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(270)
            .build_cartesian_2d((lo..hi).log_scale(), -0.5..(n as f64 - 0.5))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(RGBColor(0xEE, 0xEE, 0xEE))
            .y_labels(n + 1)
            .y_label_formatter(&|y| {
                let i = y.round();
                if (y - i).abs() > 0.01 || i < 0.0 || i as usize >= n {
                    return String::new();
                }
                labels.get(n - 1 - i as usize).cloned().unwrap_or_default()
            })
            .x_desc(x_desc)
            .draw()?;
        for (side, color, offset) in [("xo", XO_COLOR, 0.0), ("Kafka", KAFKA_COLOR, -0.38)] {
            let bars: Vec<(f64, f64, f64)> = picked
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    let v = if side == "xo" { r.xo } else { r.kafka };
                    v.filter(|v| *v > 0.0).map(|v| (v, y_of(i) + offset, y_of(i) + offset + 0.38))
                })
                .collect();
            chart
                .draw_series(
                    bars.iter()
                        .map(|(v, y0, y1)| Rectangle::new([(lo, *y0), (*v, *y1)], color.filled())),
                )?
                .label(side)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
            chart.draw_series(bars.iter().map(|(v, y0, y1)| {
                Text::new(fmt_num(*v), (*v * 1.04, (y0 + y1) / 2.0 + 0.12), ("sans-serif", 11))
            }))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    })();
    if let Err(e) = drawn {
        return format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\"><text x=\"10\" y=\"20\">plot failed: {e}</text></svg>"
        );
    }
    svg
}

pub fn throughput_svg(rows: &[Row]) -> String {
    bars_svg(
        rows,
        "Throughput: xo beside Kafka (higher is better)",
        "MB/s or txn/s (log scale)",
        |r| r.better == Better::Higher,
    )
}

pub fn latency_svg(rows: &[Row]) -> String {
    bars_svg(rows, "Latency: xo beside Kafka (lower is better)", "milliseconds (log scale)", |r| {
        r.better == Better::Lower
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(fields: Value) -> Value {
        let mut v = fields;
        v["ok"] = json!(true);
        v
    }

    #[test]
    fn t10_ratio_is_xo_over_kafka_and_ahead_follows_better() {
        // Proves: ratio = xo/kafka; "ahead" reads it the right way round
        // for throughput and for latency; a missing side gives no ratio.
        let t = Row::new(
            "produce_plain",
            "page-cache",
            "MB/s",
            Some(200.0),
            Some(100.0),
            Better::Higher,
        );
        assert_eq!(t.ratio, Some(2.0));
        assert_eq!(t.xo_ahead(), Some(true));
        assert_eq!(t.advantage(), Some(2.0));
        let l = Row::new("commit_latency p99", "fsync", "ms", Some(4.0), Some(2.0), Better::Lower);
        assert_eq!(l.ratio, Some(2.0));
        assert_eq!(l.xo_ahead(), Some(false));
        assert_eq!(l.advantage(), Some(0.5));
        let none = Row::new("consume", "fsync", "MB/s", Some(1.0), None, Better::Higher);
        assert_eq!((none.ratio, none.xo_ahead()), (None, None));
        let zero = Row::new("consume", "fsync", "MB/s", Some(1.0), Some(0.0), Better::Higher);
        assert_eq!(zero.ratio, None);
    }

    #[test]
    fn t11_rows_come_from_ok_lines_with_notes_once_per_workload() {
        // Proves: each metric of a workload becomes a row; a failed line
        // gives no number and says why; flags become notes on the
        // workload's first row only.
        let mut xo = BTreeMap::new();
        let mut kafka = BTreeMap::new();
        xo.insert(
            "commit_latency".to_string(),
            line(json!({"commit_p50_ms": 1.0, "commit_p99_ms": 2.0, "commit_p999_ms": 3.0,
                        "txn_per_s": 500.0, "truncated": true})),
        );
        kafka.insert(
            "commit_latency".to_string(),
            line(json!({"commit_p50_ms": 4.0, "commit_p99_ms": 8.0, "commit_p999_ms": 9.0,
                        "txn_per_s": 100.0})),
        );
        kafka.insert("consume".to_string(), json!({"ok": false, "error": "boom"}));
        xo.insert("consume".to_string(), line(json!({"mb_per_s": 300.0})));
        let rows = rows("fsync", &xo, &kafka);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "commit_latency p50",
                "commit_latency p99",
                "commit_latency p99.9",
                "commit_latency txns",
                "consume"
            ]
        );
        assert_eq!(rows[0].ratio, Some(0.25));
        assert_eq!(rows[0].notes, ["xo truncated"]);
        assert!(rows[1].notes.is_empty());
        assert!(rows[2].notes.is_empty(), "no sample counts, no note");
        assert_eq!(rows[3].ratio, Some(5.0));
        assert_eq!(rows[4].kafka, None);
        assert_eq!(rows[4].notes, ["kafka failed: boom"]);
    }

    #[test]
    fn t15_a_p999_over_few_samples_says_it_is_the_maximum() {
        let mut xo = BTreeMap::new();
        let mut kafka = BTreeMap::new();
        xo.insert("commit_latency".to_string(), line(json!({"commit_p999_ms": 5.0, "txns": 210})));
        kafka.insert(
            "commit_latency".to_string(),
            line(json!({"commit_p999_ms": 9.0, "txns": 5000})),
        );
        let rows = rows("fsync", &xo, &kafka);
        let p999 = rows.iter().find(|r| r.name == "commit_latency p99.9").unwrap();
        assert_eq!(p999.notes, ["xo: p99.9 of 210 samples is their maximum"]);
    }

    #[test]
    fn t12_markdown_table_has_one_line_per_row_and_reads_both_ways() {
        let rows = vec![
            Row::new(
                "produce_plain",
                "page-cache",
                "MB/s",
                Some(150.0),
                Some(50.0),
                Better::Higher,
            ),
            Row::new("e2e_latency p99", "fsync", "ms", Some(5.0), Some(20.0), Better::Lower),
            Row::new("tiny_txn", "fsync", "txn/s", None, Some(20.0), Better::Higher),
        ];
        let table = markdown_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2 + rows.len());
        assert!(lines[0].contains("ratio xo/Kafka"));
        assert_eq!(
            lines[2],
            "| page-cache | produce_plain | MB/s | 150 | 50.0 | 3.00 | higher | yes (3.00×) |  |"
        );
        assert_eq!(
            lines[3],
            "| fsync | e2e_latency p99 | ms | 5.00 | 20.0 | 0.25 | lower | yes (4.00×) |  |"
        );
        assert!(lines[4].starts_with("| fsync | tiny_txn | txn/s | – | 20.0 | – |"));
    }

    #[test]
    fn t13_limits_compare_page_cache_produce_and_fsync_txn_rates() {
        let rows = vec![
            Row::new(
                "produce_plain",
                "page-cache",
                "MB/s",
                Some(100.0),
                Some(50.0),
                Better::Higher,
            ),
            Row::new("produce_plain", "fsync", "MB/s", Some(10.0), Some(5.0), Better::Higher),
            Row::new("tiny_txn", "fsync", "txn/s", Some(250.0), Some(20.0), Better::Higher),
        ];
        let limits = json!({"loopback_mb_per_s": 1000.0, "fsync_per_s": 500.0});
        let out = limit_rows(&rows, &limits);
        assert_eq!(out.len(), 2, "no fdatasync figure, no fdatasync row");
        assert!((out[0].fraction - 0.1).abs() < 1e-9);
        assert!((out[1].fraction - 0.5).abs() < 1e-9);
        assert_eq!(limits_table(&out).lines().count(), 4);
        let both = json!({"fsync_per_s": 500.0, "fdatasync_per_s": 1000.0});
        let out = limit_rows(&rows, &both);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].limit_unit, "fdatasync/s");
        assert!((out[1].fraction - 0.25).abs() < 1e-9);
    }

    #[test]
    fn t14_bar_charts_render_every_row() {
        let rows = vec![
            Row::new(
                "produce_plain",
                "page-cache",
                "MB/s",
                Some(150.0),
                Some(50.0),
                Better::Higher,
            ),
            Row::new("tiny_txn", "fsync", "txn/s", Some(300.0), None, Better::Higher),
            Row::new("e2e_latency p99", "fsync", "ms", Some(5.0), Some(20.0), Better::Lower),
        ];
        let svg = throughput_svg(&rows);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("page-cache · produce_plain (MB/s)"));
        assert!(svg.contains("fsync · tiny_txn (txn/s)"));
        assert!(!svg.contains("e2e_latency"));
        assert!(latency_svg(&rows).contains("e2e_latency p99"));
    }
}
