//! Shared pieces of the commands: the registry, array input, option parsing, training
//! progress, output checks, JSON output.

use dlm_core::{DlmError, Registry, Result};
use dlm_tasks::io::CsvHeader;
use dlm_tasks::trainer::EpochRecord;
use dlm_tasks::{NoiseScale, SigmaChoice};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ndarray::ArrayD;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Builds the registry: built-in plugins, then `DLM_PLUGIN_PATH`, then `--plugin` paths.
pub fn registry(plugins: &[PathBuf]) -> Result<Registry> {
    let mut r = Registry::new();
    r.register_builtin("dlm-plugin-matching", dlm_plugin_matching::register)?;
    r.register_builtin("dlm-plugin-topk", dlm_plugin_topk::register)?;
    r.register_builtin("dlm-plugin-argmax", dlm_plugin_argmax::register)?;
    r.register_builtin("dlm-plugin-noise", dlm_plugin_noise::register)?;
    r.register_builtin("dlm-plugin-mlp", dlm_plugin_mlp::register)?;
    r.register_builtin(
        "dlm-plugin-shortest-path",
        dlm_plugin_shortest_path::register,
    )?;
    r.register_builtin("dlm-plugin-estimators", dlm_plugin_estimators::register)?;
    if let Ok(list) = std::env::var("DLM_PLUGIN_PATH") {
        r.load_path_list(&list)?;
    }
    for p in plugins {
        r.load_library(p)?;
    }
    Ok(r)
}

/// The noise-scale model of a `--sigma` mode; `learned` creates the scorer `spec`.
pub fn sigma_model(reg: &Registry, mode: SigmaChoice, spec: &str) -> Result<NoiseScale> {
    Ok(match mode {
        SigmaChoice::Learned => NoiseScale::Learned(reg.scorer(&spec.parse()?)?),
        SigmaChoice::Fixed(v) => NoiseScale::Fixed(v),
        SigmaChoice::None => NoiseScale::None,
    })
}

/// Reads an array from a `.npy` file (f64 or f32, any rank) or a CSV file (numbers, one row
/// per line, `[rows, columns]`; a header line only if it looks like one), see
/// [`dlm_tasks::io`].
pub fn read_array(path: &Path) -> Result<ArrayD<f64>> {
    dlm_tasks::io::read_array(path, CsvHeader::Auto)
}

/// How standard output is named in errors about writing it.
pub const STDOUT: &str = "<stdout>";

/// An error writing standard output.
pub fn stdout_error(e: std::io::Error) -> DlmError {
    DlmError::io("writing", STDOUT, e)
}

/// Whether `e` says that the reader of standard output went away (a closed pipe, as in
/// `dlm plugins | head -1`): the command then ends quietly with exit code 141, the code of a
/// process ended by SIGPIPE, so that a pipeline under `set -o pipefail` still sees that the
/// output was cut short.
pub fn is_closed_stdout(e: &DlmError) -> bool {
    matches!(e, DlmError::Io { path, source, .. }
        if path.as_os_str() == STDOUT && source.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Exit code of a command whose standard output was closed by its reader.
pub const CLOSED_STDOUT_EXIT: u8 = 141;

/// Buffered standard output whose errors are reported, never a panic: write with
/// `write!`/`writeln!` (mapping errors with [`stdout_error`]) and end with [`Out::finish`],
/// which flushes and reports a full disk or a closed pipe.
pub struct Out(std::io::BufWriter<std::io::StdoutLock<'static>>);

/// Standard output, see [`Out`].
pub fn out() -> Out {
    Out(std::io::BufWriter::new(std::io::stdout().lock()))
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Out {
    /// Flushes everything written, reporting any error ([`stdout_error`]).
    pub fn finish(mut self) -> Result<()> {
        self.0.flush().map_err(stdout_error)
    }
}

/// Writes `text` and a newline to standard output and flushes it.
pub fn write_stdout(text: &str) -> Result<()> {
    let mut o = out();
    writeln!(o, "{text}").map_err(stdout_error)?;
    o.finish()
}

/// Ends the process after a failed write to standard output: quietly with exit code
/// [`CLOSED_STDOUT_EXIT`] when the reader went away, otherwise with the error on stderr and
/// exit code 2.
fn exit_after_stdout_error(e: DlmError) -> ! {
    if is_closed_stdout(&e) {
        std::process::exit(CLOSED_STDOUT_EXIT.into());
    }
    eprintln!("error: {e}");
    std::process::exit(2)
}

/// Parses a comma-separated list of numbers.
pub fn parse_list<T: std::str::FromStr>(s: &str, what: &str) -> Result<Vec<T>> {
    s.split(',')
        .map(|p| {
            p.trim().parse::<T>().map_err(|_| {
                DlmError::invalid(what, format!("'{p}' in '{s}' is not a valid number"))
            })
        })
        .collect()
}

/// Prints a JSON value on stdout. It is the last thing a command does, so a failure to write
/// (a closed pipe, a full disk) ends the process here (see [`exit_after_stdout_error`])
/// rather than panicking; commands that write more use [`out`] and return the error.
pub fn print_json(v: &serde_json::Value) {
    let text = serde_json::to_string_pretty(v).expect("serialisable");
    if let Err(e) = write_stdout(&text) {
        exit_after_stdout_error(e);
    }
}

/// A JSON number that stays valid for non-finite values (null).
pub fn num(x: f64) -> serde_json::Value {
    serde_json::Number::from_f64(x)
        .map(serde_json::Value::Number)
        .unwrap_or(serde_json::Value::Null)
}

/// Parses `--test-range LO,HI` (finite, LO < HI).
pub(crate) fn parse_range(s: &str) -> Result<(f64, f64)> {
    let v: Vec<f64> = parse_list(s, "--test-range")?;
    match v.as_slice() {
        [lo, hi] if lo.is_finite() && hi.is_finite() && lo < hi => Ok((*lo, *hi)),
        _ => Err(DlmError::invalid(
            "--test-range",
            format!("'{s}': write LO,HI with LO < HI, e.g. 0,1"),
        )),
    }
}

/// Training progress on stderr: a bar on a terminal, otherwise a line every two seconds (or
/// every `DLM_PROGRESS_INTERVAL` seconds; 0 prints every epoch).
pub(crate) struct Progress {
    pub(crate) bar: ProgressBar,
    plain: bool,
    last: Instant,
    interval: f64,
}

impl Progress {
    /// A progress display for `total` epochs (nothing when `quiet`).
    pub(crate) fn new(total: u64, quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = if quiet || !tty {
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden())
        } else {
            let b =
                ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(10));
            b.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] epoch {pos}/{len} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b
        };
        let interval = std::env::var("DLM_PROGRESS_INTERVAL")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .unwrap_or(2.0);
        Progress {
            bar,
            plain: !quiet && !tty,
            last: Instant::now(),
            interval,
        }
    }

    /// Shows one epoch's record.
    pub(crate) fn update(&mut self, r: &EpochRecord) {
        // Formatted only when shown (an epoch can take 50 us).
        let msg = || {
            format!(
                "loss {:.4} perturbed {:.4} sigma {:.4} eps {:.3} zero-dir {:.2}",
                r.loss, r.perturbed_loss, r.sigma, r.epsilon, r.zero_rate
            )
        };
        self.bar.set_position(r.epoch + 1);
        if !self.bar.is_hidden() {
            self.bar.set_message(msg());
        } else if self.plain && self.last.elapsed().as_secs_f64() >= self.interval {
            eprintln!("epoch {} {}", r.epoch + 1, msg());
            self.last = Instant::now();
        }
    }
}

/// The `--estimator` of a run and the defaults it implies for the other options.
pub struct EstimatorChoice {
    /// The estimator to replace DLM with (`None`: DLM from the task's settings).
    pub estimator: Option<Box<dyn dlm_core::gradient::GradientEstimator>>,
    /// The spec as given (for the model header and the JSON), `dlm` by default.
    pub spec: String,
    /// `--sigma`'s default under this estimator, when it differs from the task's: none for
    /// estimators without noise, fixed:1 for those that use noise but learn no sigma.
    pub sigma_default: Option<SigmaChoice>,
    /// Whether `--noise` defaults to Sum-of-Gamma (I-MLE).
    pub sum_of_gamma: bool,
}

impl EstimatorChoice {
    /// The sigma of a run: `--sigma` if given, else this estimator's default, else the task's.
    pub fn sigma(&self, given: Option<SigmaChoice>, task_default: SigmaChoice) -> SigmaChoice {
        given.or(self.sigma_default).unwrap_or(task_default)
    }

    /// The noise of a run: `--noise` if given, else Sum-of-Gamma with `k` parts for I-MLE,
    /// else the task's default.
    pub fn noise(&self, given: Option<&str>, k: usize, task_default: &str) -> String {
        match given {
            Some(n) => n.to_string(),
            None if self.sum_of_gamma => format!("sum-of-gamma:k={}", k.max(1)),
            None => task_default.to_string(),
        }
    }
}

/// Estimators that take `draws` (so `--draws` is passed to them).
const DRAWS_ESTIMATORS: [&str; 3] = ["dlm", "fy", "imle"];

/// Creates the estimator of `--estimator` (with `--draws` passed on where it applies).
pub fn estimator_choice(
    reg: &Registry,
    spec: Option<&str>,
    draws: Option<usize>,
) -> Result<EstimatorChoice> {
    let Some(text) = spec else {
        return Ok(EstimatorChoice {
            estimator: None,
            spec: "dlm".into(),
            sigma_default: None,
            sum_of_gamma: false,
        });
    };
    let mut parsed: dlm_core::Spec = text.parse()?;
    if parsed.name == "dlm" && parsed.options.is_empty() {
        // DLM with the task's settings (--epsilon, --draws, --max-epsilon).
        return estimator_choice(reg, None, draws);
    }
    if let Some(d) = draws {
        if DRAWS_ESTIMATORS.contains(&parsed.name.as_str()) {
            if !parsed.options.contains_key("draws") {
                parsed = parsed.with("draws", d);
            }
        } else if reg.names(dlm_core::Kind::Estimator).contains(&parsed.name) {
            return Err(DlmError::invalid(
                "--draws",
                format!(
                    "estimator '{}' draws no noise samples; remove --draws",
                    parsed.name
                ),
            ));
        }
    }
    let e = reg.estimator(&parsed)?;
    let sigma_default = if !e.uses_noise() {
        Some(SigmaChoice::None)
    } else if !e.learns_sigma() {
        Some(SigmaChoice::Fixed(1.0))
    } else {
        None
    };
    Ok(EstimatorChoice {
        sum_of_gamma: parsed.name == "imle",
        spec: text.to_string(),
        estimator: Some(e),
        sigma_default,
    })
}

/// The default sigma network on inputs of width `width`: a softplus linear layer with
/// `--sigma-opt` (default SGD) at learning rate `lr`, seeded by `seed`; with `--sigma-init V`
/// its last layer starts with zero weights and the bias `softplus^-1(V)`, so that sigma(x) = V
/// for every input at the start.
pub(crate) fn default_sigma_net(
    a: &crate::args::TrainArgs,
    width: usize,
    lr: f64,
    seed: u64,
) -> String {
    let opt = a.sigma_opt.as_deref().unwrap_or("sgd");
    let mut s = format!("mlp:sizes={width}-1,out=softplus,opt={opt},lr={lr},seed={seed}");
    if let Some(v) = a.sigma_init {
        s.push_str(&format!(
            ",out_init_scale=0,bias_init={}",
            inverse_softplus(v)
        ));
    }
    s
}

/// `softplus^-1(v) = ln(exp(v) - 1)`, computed stably (`v + ln(1 - exp(-v))`) for `v > 0`.
pub(crate) fn inverse_softplus(v: f64) -> f64 {
    v + (-(-v).exp()).ln_1p()
}

/// Applies `--eps-policy` / `--eps-band` to `model` (built with the DLM settings it will use)
/// and records them in the run's settings (only for the adaptive policy, so that the seed
/// policy's checkpoints are unchanged). Refuses them with another estimator, and a band
/// without the adaptive policy.
pub(crate) fn apply_eps_policy(
    a: &crate::args::TrainArgs,
    model: &mut dlm_tasks::PerturbedModel,
    settings: &mut std::collections::BTreeMap<String, String>,
) -> Result<()> {
    let adaptive = a.eps_policy.as_deref() == Some("adaptive");
    if !adaptive {
        if a.eps_band.is_some() {
            return Err(DlmError::invalid(
                "--eps-band",
                "applies to --eps-policy adaptive; add it or remove the band",
            ));
        }
        return Ok(());
    }
    if model.estimator_name() != "dlm" {
        return Err(DlmError::invalid(
            "--eps-policy",
            format!(
                "the eps policy is DLM's; estimator '{}' has none",
                model.estimator_name()
            ),
        ));
    }
    let band = match &a.eps_band {
        None => (0.5, 0.8),
        Some(b) => parse_range(b).map_err(|_| {
            DlmError::invalid(
                "--eps-band",
                format!("'{b}': write LO,HI with 0 <= LO < HI <= 1"),
            )
        })?,
    };
    let policy = dlm_core::adaptive::AdaptiveDlm::new(model.estimator().clone(), band)
        .map_err(|e| DlmError::invalid("--eps-band", e.to_string()))?;
    model.set_estimator(Box::new(policy))?;
    settings.insert("eps_policy".into(), "adaptive".into());
    settings.insert("eps_band".into(), format!("{},{}", band.0, band.1));
    Ok(())
}
