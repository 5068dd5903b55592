//! `dlm plugins`, `dlm solve`, `dlm sample`.

use crate::common::{num, parse_list, print_json, read_array};
use clap::Args;
use dlm_core::predictor;
use dlm_core::{DlmError, Registry, Result, Spec};
use ndarray::{ArrayD, Axis, IxDyn};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

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
        let mut last = None;
        for c in &list {
            if last != Some(c.kind) {
                println!("{}:", c.kind.as_str());
                last = Some(c.kind);
            }
            println!("  {:<16} {}  [{}]", c.name, c.description, c.origin);
        }
        println!(
            "core {} (plugin ABI fingerprint {}), {}",
            dlm_core::plugin::CORE_VERSION,
            dlm_core::plugin::ABI_FINGERPRINT,
            dlm_core::plugin::RUSTC_VERSION
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Where the potentials come from.
#[derive(Args, Debug)]
pub struct PotentialsInput {
    /// A .npy (float64/float32) or .csv file with the potentials.
    #[arg(long, short, value_name = "FILE", conflicts_with = "potentials")]
    input: Option<PathBuf>,
    /// Potentials inline, comma-separated (a vector; use --rows to make it a matrix).
    #[arg(long, value_name = "X,Y,..", allow_hyphen_values = true)]
    potentials: Option<String>,
    /// Reshape inline potentials into this many rows.
    #[arg(long, requires = "potentials")]
    rows: Option<usize>,
}

impl PotentialsInput {
    fn load(&self) -> Result<ArrayD<f64>> {
        if let Some(p) = &self.input {
            return read_array(p);
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
        Ok(ArrayD::from_shape_vec(IxDyn(&shape), v).expect("checked"))
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
    let theta = a.input.load()?;
    // One problem, or a batch along the first axis when the shape is one rank too many.
    let problems: Vec<ArrayD<f64>> = if s.check_shape(theta.shape()).is_ok() {
        vec![theta]
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
    /// Number of perturb-and-MAP samples.
    #[arg(long, default_value_t = 10_000)]
    samples: usize,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Report at most this many distinct solutions (most frequent first).
    #[arg(long, default_value_t = 20)]
    top: usize,
    #[command(flatten)]
    input: PotentialsInput,
}

pub fn sample(reg: &Registry, a: &SampleArgs) -> Result<ExitCode> {
    let s = reg.structure(&a.structure.parse()?)?;
    let noise = reg.noise(&a.noise.parse()?)?;
    let theta = a.input.load()?;
    let summary = predictor::sample(
        s.as_ref(),
        noise.as_ref(),
        theta.view(),
        a.sigma,
        a.samples,
        a.seed,
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
        "mean_max": num(summary.mean_max),
        "frequencies": freq,
    }));
    Ok(ExitCode::SUCCESS)
}
