//! Figures: one JSON line each as soon as it is known, and a table at the end.

use std::fmt::Write as _;

/// One measured quantity over several runs.
#[derive(Debug, Clone)]
pub struct Figure {
    pub name: String,
    pub unit: &'static str,
    pub runs: Vec<f64>,
    /// The 1-minute load average at each run: the machine is shared, so figures need it.
    pub loads: Vec<f64>,
    /// The target from the issue, as text ("≥ 0.8"), when there is one.
    pub target: Option<String>,
    /// Whether the median meets the target.
    pub met: Option<bool>,
}

impl Figure {
    pub fn median(&self) -> f64 {
        median(&self.runs)
    }
}

pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// A target check on a figure's median.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    AtLeast(f64),
    AtMost(f64),
}

impl Target {
    fn text(self) -> String {
        match self {
            Target::AtLeast(x) => format!("≥ {x}"),
            Target::AtMost(x) => format!("≤ {x}"),
        }
    }

    fn met(self, value: f64) -> bool {
        match self {
            Target::AtLeast(x) => value >= x,
            Target::AtMost(x) => value <= x,
        }
    }
}

#[derive(Default)]
pub struct Report {
    figures: Vec<Figure>,
}

impl Report {
    /// Records a figure and prints its JSON line.
    pub fn add(
        &mut self,
        name: &str,
        unit: &'static str,
        runs: Vec<f64>,
        loads: Vec<f64>,
        target: Option<Target>,
    ) {
        let mut figure = Figure {
            name: name.to_string(),
            unit,
            runs,
            loads,
            target: target.map(Target::text),
            met: None,
        };
        figure.met = target.map(|t| t.met(figure.median()));
        println!("{}", json_line(&figure));
        self.figures.push(figure);
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| figure | median | unit | runs | load (1 min) | target |\n|---|---:|---|---|---|---|"
        );
        for f in &self.figures {
            let runs: Vec<String> = f.runs.iter().map(|v| fmt_num(*v)).collect();
            let loads: Vec<String> = f.loads.iter().map(|v| format!("{v:.1}")).collect();
            let target = match (&f.target, f.met) {
                (Some(t), Some(true)) => format!("{t} ✔"),
                (Some(t), _) => format!("{t} ✘"),
                (None, _) => String::new(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                f.name,
                fmt_num(f.median()),
                f.unit,
                runs.join(", "),
                loads.join(", "),
                target
            );
        }
        out
    }
}

fn json_line(f: &Figure) -> String {
    serde_json::json!({
        "figure": f.name,
        "median": finite(f.median()),
        "unit": f.unit,
        "runs": f.runs.iter().map(|v| finite(*v)).collect::<Vec<_>>(),
        "load1": f.loads,
        "target": f.target,
        "met": f.met,
    })
    .to_string()
}

fn finite(v: f64) -> serde_json::Value {
    if v.is_finite() {
        serde_json::json!((v * 1000.0).round() / 1000.0)
    } else {
        serde_json::Value::Null
    }
}

pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        "n/a".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
