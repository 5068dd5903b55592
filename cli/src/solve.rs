//! `dlm plugins`, `dlm solve`, `dlm sample`.

use crate::common::{num, out, parse_list, print_json, stdout_error};
use clap::Args;
use dlm_core::predictor::{self, SampleOptions, DEFAULT_MAX_DISTINCT};
use dlm_core::{DlmError, Registry, Result, Spec, StructuredArgmax};
use dlm_tasks::io::{ArrayFile, CsvHeader};
use ndarray::{ArrayD, Axis, IxDyn};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Options of `dlm plugins`.
#[derive(Args, Debug)]
pub struct PluginsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn plugins(reg: &Registry, a: &PluginsArgs) -> Result<ExitCode> {
    let list = reg.list();
    if a.json {
        print_json(&json!(list
            .iter()
            .map(|c| json!({
                "kind": c.kind.as_str(),
                "name": c.name,
                "description": c.description,
                "origin": c.origin.to_string(),
            }))
            .collect::<Vec<_>>()));
    } else {
        let mut o = out();
        let mut last = None;
        for c in &list {
            if last != Some(c.kind) {
                writeln!(o, "{}:", c.kind.as_str()).map_err(stdout_error)?;
                last = Some(c.kind);
            }
            writeln!(o, "  {:<16} {}  [{}]", c.name, c.description, c.origin)
                .map_err(stdout_error)?;
        }
        writeln!(
            o,
            "core {} (plugin ABI fingerprint {}), {}",
            dlm_core::plugin::CORE_VERSION,
            dlm_core::plugin::ABI_FINGERPRINT,
            dlm_core::plugin::RUSTC_VERSION
        )
        .map_err(stdout_error)?;
        o.finish()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Where the potentials come from.
#[derive(Args, Debug)]
pub struct PotentialsInput {
    /// A .npy (float64/float32) or .csv file with the potentials. A CSV file is a table, one
    /// row per line; a single row or column is also read as a vector when the structure
    /// needs one.
    #[arg(long, short, value_name = "FILE", conflicts_with = "potentials")]
    input: Option<PathBuf>,
    /// The CSV file's first line (after # comments) is a header: skip it whatever it holds.
    /// Without this flag a first line is taken as a header only if every field looks like a
    /// column name (e.g. x,y,z); anything else that is not a number is an error.
    #[arg(long, requires = "input")]
    header: bool,
    /// Potentials inline, comma-separated (a vector; use --rows to make it a matrix).
    #[arg(long, value_name = "X,Y,..", allow_hyphen_values = true)]
    potentials: Option<String>,
    /// Reshape inline potentials into this many rows.
    #[arg(long, requires = "potentials")]
    rows: Option<usize>,
}

/// Potentials as read, and whether they came from a CSV table (whose single row or column
/// may be read as a vector).
struct Loaded {
    theta: ArrayD<f64>,
    table: bool,
}

impl PotentialsInput {
    fn load(&self) -> Result<Loaded> {
        if let Some(p) = &self.input {
            let header = if self.header {
                CsvHeader::Present
            } else {
                CsvHeader::Auto
            };
            let table = ArrayFile::of(p)? == ArrayFile::Csv;
            let theta = dlm_tasks::io::read_array(p, header)?;
            return Ok(Loaded { theta, table });
        }
        let Some(s) = &self.potentials else {
            return Err(DlmError::invalid(
                "potentials",
                "give --input FILE or --potentials X,Y,...",
            ));
        };
        let v: Vec<f64> = parse_list(s, "--potentials")?;
        let shape = match self.rows {
            Some(r) if r > 0 && v.len() % r == 0 => vec![r, v.len() / r],
            Some(r) => {
                return Err(DlmError::invalid(
                    "--rows",
                    format!("{} values cannot form {r} equal rows", v.len()),
                ))
            }
            None => vec![v.len()],
        };
        let theta = ArrayD::from_shape_vec(IxDyn(&shape), v).expect("checked");
        Ok(Loaded {
            theta,
            table: false,
        })
    }
}

impl Loaded {
    /// The potentials as one problem of the structure: as read, or, for a CSV table of one
    /// row or one column, as a vector when that is what the structure takes. `None` when
    /// neither fits.
    fn one(&self, s: &dyn StructuredArgmax) -> Option<ArrayD<f64>> {
        let shape = self.theta.shape();
        if s.check_shape(shape).is_ok() {
            return Some(self.theta.clone());
        }
        let line = self.table && shape.len() == 2 && (shape[0] == 1 || shape[1] == 1);
        let flat = [self.theta.len()];
        (line && s.check_shape(&flat).is_ok()).then(|| {
            self.theta
                .clone()
                .into_shape_with_order(IxDyn(&flat))
                .expect("same size")
        })
    }
}

/// Options of `dlm solve`.
#[derive(Args, Debug)]
pub struct SolveArgs {
    /// The structure, e.g. matching, matching:algo=km, topk:k=3, argmax.
    #[arg(long, short, default_value = "matching")]
    structure: String,
    #[command(flatten)]
    input: PotentialsInput,
}

pub fn solve(reg: &Registry, a: &SolveArgs) -> Result<ExitCode> {
    let spec: Spec = a.structure.parse()?;
    let s = reg.structure(&spec)?;
    let loaded = a.input.load()?;
    let theta = &loaded.theta;
    // One problem, or a batch along the first axis when the shape is one rank too many.
    let problems: Vec<ArrayD<f64>> = if let Some(p) = loaded.one(s.as_ref()) {
        vec![p]
    } else if theta.ndim() > 1 && s.check_shape(&theta.shape()[1..]).is_ok() {
        theta.axis_iter(Axis(0)).map(|v| v.to_owned()).collect()
    } else {
        s.check_shape(theta.shape())?;
        unreachable!("check_shape failed above")
    };
    let mut results = Vec::new();
    for p in &problems {
        let mut active = Vec::new();
        s.argmax(p.view(), &mut active)?;
        let score = dlm_core::structure::score(&p.view(), &active);
        if !score.is_finite() {
            eprintln!(
                "note: the score of the solution overflows f64 (printed as null); the solution is \
                 still the optimum"
            );
        }
        results.push(json!({
            "shape": p.shape(),
            "solution": s.decode(p.shape(), &active),
            "active": active,
            "score": num(score),
        }));
    }
    let out = if results.len() == 1 {
        let mut r = results.pop().expect("one");
        r["structure"] = json!(spec.to_string());
        r
    } else {
        json!({"structure": spec.to_string(), "problems": results})
    };
    print_json(&out);
    Ok(ExitCode::SUCCESS)
}

/// Options of `dlm sample`.
#[derive(Args, Debug)]
pub struct SampleArgs {
    /// The structure, e.g. matching, topk:k=2, argmax.
    #[arg(long, short, default_value = "argmax")]
    structure: String,
    /// The noise model.
    #[arg(long, default_value = "gumbel")]
    noise: String,
    /// The noise scale sigma (>= 0).
    #[arg(long, default_value_t = 1.0)]
    sigma: f64,
    /// Number of perturb-and-MAP samples. They are counted as they are drawn, so memory does
    /// not grow with this number.
    #[arg(long, default_value_t = 10_000)]
    samples: usize,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Report at most this many distinct solutions (most frequent first).
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Keep counts for at most this many distinct solutions (the first ones found); the
    /// samples of any other solution are reported together as "other".
    #[arg(long, default_value_t = DEFAULT_MAX_DISTINCT)]
    max_distinct: usize,
    /// No progress output (long runs otherwise report progress on stderr once a second).
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    input: PotentialsInput,
}

pub fn sample(reg: &Registry, a: &SampleArgs) -> Result<ExitCode> {
    let s = reg.structure(&a.structure.parse()?)?;
    let noise = reg.noise(&a.noise.parse()?)?;
    let loaded = a.input.load()?;
    let theta = match loaded.one(s.as_ref()) {
        Some(t) => t,
        None => {
            s.check_shape(loaded.theta.shape())?;
            unreachable!("check_shape failed above")
        }
    };
    let start = Instant::now();
    let mut last = start;
    let mut progress = |done: usize| {
        if !a.quiet && done < a.samples && last.elapsed().as_secs_f64() >= 1.0 {
            last = Instant::now();
            eprintln!(
                "sampled {done} of {} ({:.1}%, {:.0} s)",
                a.samples,
                100.0 * done as f64 / a.samples as f64,
                start.elapsed().as_secs_f64()
            );
        }
    };
    let options = SampleOptions {
        max_distinct: a.max_distinct,
        progress: Some(&mut progress),
        ..SampleOptions::default()
    };
    let summary = predictor::sample_with(
        s.as_ref(),
        noise.as_ref(),
        theta.view(),
        a.sigma,
        a.samples,
        a.seed,
        options,
    )?;
    let freq: Vec<_> = summary
        .counts
        .iter()
        .take(a.top)
        .map(|(sol, c)| {
            json!({
                "solution": s.decode(theta.shape(), sol),
                "count": c,
                "frequency": num(*c as f64 / summary.samples as f64),
            })
        })
        .collect();
    print_json(&json!({
        "structure": a.structure,
        "noise": a.noise,
        "sigma": num(a.sigma),
        "seed": a.seed,
        "samples": summary.samples,
        "distinct": summary.counts.len(),
        "other": summary.other,
        "mean_max": num(summary.mean_max),
        "frequencies": freq,
    }));
    Ok(ExitCode::SUCCESS)
}
