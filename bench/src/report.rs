//! Results: each scenario's report (readable lines, JSON data, the targets it
//! checks), and the JSON document holding every report of a run.
use crate::Options;
use crate::Res;
use serde::Serialize;
use serde_json::{json, Value};
use std::path::Path;

/// One of the targets from the benchmark issue, checked against a measured value.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub figure: String,
    pub target: String,
    pub measured: f64,
    pub unit: String,
    pub met: bool,
}

impl Target {
    pub fn at_most(figure: &str, limit: f64, measured: f64, unit: &str) -> Self {
        Self {
            figure: figure.to_owned(),
            target: format!("<= {limit} {unit}"),
            measured,
            unit: unit.to_owned(),
            met: measured <= limit,
        }
    }

    pub fn at_least(figure: &str, limit: f64, measured: f64, unit: &str) -> Self {
        Self {
            figure: figure.to_owned(),
            target: format!(">= {limit} {unit}"),
            measured,
            unit: unit.to_owned(),
            met: measured >= limit,
        }
    }
}

pub struct Report {
    pub name: String,
    pub lines: Vec<String>,
    pub data: Value,
    pub targets: Vec<Target>,
    load: (f64, f64),
}

impl Report {
    pub fn new(name: &str, data: Value) -> Self {
        Self {
            name: name.to_owned(),
            lines: Vec::new(),
            data,
            targets: Vec::new(),
            load: (0.0, 0.0),
        }
    }

    pub fn line(&mut self, line: impl Into<String>) {
        self.lines.push(line.into());
    }

    pub fn target(&mut self, target: Target) {
        self.targets.push(target);
    }

    pub fn set_load(&mut self, before: f64, after: f64) {
        self.load = (before, after);
    }

    pub fn to_json(&self) -> Value {
        json!({
            "scenario": self.name,
            "load_average": {"before": self.load.0, "after": self.load.1},
            "results": self.data,
            "targets": self.targets,
        })
    }

    pub fn print(&self) {
        println!(
            "\n== {} == (load average {:.2} -> {:.2})",
            self.name, self.load.0, self.load.1
        );
        for line in &self.lines {
            println!("  {line}");
        }
        for t in &self.targets {
            println!(
                "  target {}: {} -> {:.2} {} [{}]",
                t.figure,
                t.target,
                t.measured,
                t.unit,
                if t.met { "met" } else { "MISSED" }
            );
        }
        match serde_json::to_string_pretty(&self.to_json()) {
            Ok(text) => println!("{text}"),
            Err(e) => println!("(cannot encode the JSON: {e})"),
        }
    }
}

pub struct Document {
    header: Value,
    reports: Vec<Value>,
}

impl Document {
    pub fn new(options: &Options, descriptor_limit: u64) -> Self {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("model name")
                        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
                })
            })
            .unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            header: json!({
                "tool": "switchboard-bench",
                "started_unix": started,
                "smoke": options.smoke,
                "machine": {
                    "cores": cores,
                    "cpu": cpu_model,
                    "kernel": kernel,
                    "descriptor_limit": descriptor_limit,
                },
                "options": options,
            }),
            reports: Vec::new(),
        }
    }

    pub fn push(&mut self, report: Report) {
        self.reports.push(report.to_json());
    }

    pub fn write(&self, path: &Path) -> Res<()> {
        let mut document = self.header.clone();
        document["scenarios"] = Value::Array(self.reports.clone());
        std::fs::write(path, serde_json::to_string_pretty(&document)?)?;
        Ok(())
    }
}
