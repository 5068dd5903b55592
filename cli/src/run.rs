//! One run of `dlm train`, fresh or resumed from a checkpoint: the options (merged with the
//! checkpoint's), the outputs checked before any training, the loop with progress, periodic
//! checkpoints and clean interrupts, then the final checkpoint and the model.
//!
//! Resuming: every option a checkpoint stores comes back from it; those of [`RUN_FLAGS`] may
//! be given anew. Any other option given with `--resume` is allowed only if the run's settings
//! (the task's resolved settings: component specs, sizes, seed, trainer and evaluation
//! settings, a checksum of the data) come out the same as the checkpoint's; otherwise the
//! run is refused with the settings and the options that differ.

use crate::args::TrainArgs;
use crate::common::Progress;
use crate::outputs::{self, Output};
use clap::{Args, FromArgMatches};
use dlm_core::{profile, DlmError, Result};
use dlm_tasks::checkpoint::Checkpoint;
use dlm_tasks::interrupt;
use dlm_tasks::model_file::ModelFile;
use dlm_tasks::trainer::{fit_with, EpochRecord, FitHooks, FitOptions, FitReport, FitState, Task};
use dlm_tasks::PerturbedModel;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Options that may differ on `--resume` (outputs and the total number of epochs); the
/// checkpoint's value applies when they are not given.
pub(crate) const RUN_FLAGS: &[&str] = &[
    "--epochs",
    "--save",
    "--plot",
    "--json",
    "--checkpoint",
    "--checkpoint-every",
];

/// Options of this invocation only, never stored.
const LOCAL_FLAGS: &[&str] = &["--quiet", "--resume", "--time-budget", "--profile"];

/// Options holding paths, stored absolute so that a run resumes from any directory.
const PATH_FLAGS: &[&str] = &["--save", "--plot", "--checkpoint", "--data-dir"];

/// Without `--checkpoint-every`, a checkpoint is written at the end of the first epoch that
/// ends this long after the last write.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);

/// A resumed run's checkpoint.
pub(crate) struct Resumed {
    path: PathBuf,
    ck: Checkpoint,
    /// Options given with `--resume` besides [`RUN_FLAGS`], as given.
    explicit: Vec<(String, String)>,
}

/// One `dlm train` run, set up and checked; nothing trained yet.
pub(crate) struct RunSetup {
    /// The run's options (with `--resume`: the checkpoint's, updated by those given).
    pub(crate) args: TrainArgs,
    resume: Option<Resumed>,
    /// The options a checkpoint of this run stores.
    stored: Vec<(String, String)>,
    save: Option<Output>,
    plot: Option<Output>,
    checkpoint: Option<Output>,
}

/// The end of training.
pub(crate) struct Trained {
    /// The trainer's report (for a resumed run, of the whole run).
    pub(crate) report: FitReport,
    /// The signal that interrupted the run (also when it came after training).
    pub(crate) signal: Option<i32>,
    /// Whether `--time-budget` ended training.
    pub(crate) time_budget: bool,
    /// `--profile`: the cost model of this invocation's epochs.
    pub(crate) profile: Option<profile::Report>,
}

impl Trained {
    /// Adds `partial` (training stopped before its end), `interrupted_by` and the per-epoch
    /// traces to the JSON.
    pub(crate) fn add_json(&self, v: &mut serde_json::Value) {
        if let Some(o) = v.as_object_mut() {
            let h = &self.report.history;
            let col = |f: fn(&dlm_tasks::trainer::EpochRecord) -> f64| -> serde_json::Value {
                h.iter().map(|r| crate::common::num(f(r))).collect()
            };
            o.insert(
                "sigma_trace".into(),
                serde_json::json!({
                    "mean": col(|r| r.sigma),
                    "min": col(|r| r.sigma_min),
                    "max": col(|r| r.sigma_max),
                    "grad_abs_mean": col(|r| r.sigma_grad_abs),
                }),
            );
            o.insert("epsilon_trace".into(), col(|r| r.epsilon));
            o.insert("zero_rate_trace".into(), col(|r| r.zero_rate));
            o.insert(
                "zero_rate_with_loss_trace".into(),
                col(|r| r.zero_rate_with_loss),
            );
            o.insert("train_loss_trace".into(), col(|r| r.loss));
            o.insert("watched_trace".into(), col(|r| r.watched));
            if h.iter().any(|r| r.test_accuracy.is_some()) {
                o.insert(
                    "test_accuracy_trace".into(),
                    col(|r| r.test_accuracy.unwrap_or(f64::NAN)),
                );
            }
            o.insert("partial".into(), self.report.interrupted.into());
            let by = if self.signal.is_some() {
                "signal"
            } else if self.time_budget {
                "time_budget"
            } else if self.report.stopped_early {
                "early_stopping"
            } else {
                "max_epochs"
            };
            o.insert("stopped_by".into(), by.into());
            o.insert(
                "interrupted_by".into(),
                self.signal
                    .map_or(serde_json::Value::Null, |s| crate::signals::name(s).into()),
            );
            if let Some(p) = &self.profile {
                o.insert("profile".into(), profile_json(p));
            }
        }
    }

    /// 0, or `128 + signal` after an interrupt.
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self.signal {
            Some(s) => ExitCode::from((128 + s).clamp(0, 255) as u8),
            None => ExitCode::SUCCESS,
        }
    }
}

fn absolute(p: &str) -> Result<String> {
    let a = std::path::absolute(p).map_err(|e| DlmError::io("resolving", p, e))?;
    a.to_str().map(str::to_string).ok_or_else(|| {
        DlmError::invalid(
            "--checkpoint",
            format!("{}: a path that is not UTF-8 cannot be stored", a.display()),
        )
    })
}

/// The options to store: all given but [`LOCAL_FLAGS`], paths absolute (the data file of
/// the structured task resolved, as its model stores it).
fn to_store(given: &[(String, Option<String>)], structured: bool) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (flag, value) in given {
        if LOCAL_FLAGS.contains(&flag.as_str()) {
            continue;
        }
        let value = value.clone().ok_or_else(|| {
            DlmError::invalid(
                flag,
                "its value is not UTF-8 and cannot be stored in a checkpoint",
            )
        })?;
        let value = if PATH_FLAGS.contains(&flag.as_str()) {
            absolute(&value)?
        } else if structured && flag == "--data" {
            match std::fs::canonicalize(&value) {
                Ok(p) => p.to_str().map_or(value, str::to_string),
                Err(_) => absolute(&value)?,
            }
        } else {
            value
        };
        if value.contains(['\n', '\r']) {
            return Err(DlmError::invalid(
                flag,
                "its value contains a line break and cannot be stored in a checkpoint",
            ));
        }
        out.push((flag.clone(), value));
    }
    Ok(out)
}

/// Rebuilds the options from stored (`--flag`, value) pairs.
fn parse_stored(stored: &[(String, String)], path: &Path) -> Result<TrainArgs> {
    let cmd = TrainArgs::augment_args(clap::Command::new("train").no_binary_name(true));
    let mut argv = Vec::new();
    for (flag, value) in stored {
        let arg = cmd
            .get_arguments()
            .find(|a| {
                a.get_long()
                    .is_some_and(|l| flag.strip_prefix("--") == Some(l))
            })
            .ok_or_else(|| {
                DlmError::format(
                    "checkpoint",
                    path,
                    format!("it stores option {flag}, which this dlm does not know"),
                )
            })?;
        if arg.get_action().takes_values() {
            argv.push(format!("{flag}={value}"));
        } else {
            argv.push(flag.clone());
        }
    }
    let m = cmd.try_get_matches_from(argv).map_err(|e| {
        DlmError::format(
            "checkpoint",
            path,
            format!("its options do not parse: {}", e.to_string().trim()),
        )
    })?;
    TrainArgs::from_arg_matches(&m).map_err(|e| {
        DlmError::format(
            "checkpoint",
            path,
            format!("its options do not parse: {}", e.to_string().trim()),
        )
    })
}

impl RunSetup {
    /// Reads the checkpoint of `--resume`, merges the options, and checks every output path
    /// (before anything is loaded or trained).
    pub(crate) fn new(a: &TrainArgs) -> Result<Self> {
        let (args, resume, stored) = match &a.resume {
            None => {
                let stored = if a.checkpoint.is_some() {
                    to_store(&a.given, a.task.reads_files())?
                } else {
                    Vec::new()
                };
                (a.clone(), None, stored)
            }
            Some(rp) => {
                let ck = Checkpoint::read(rp)?;
                let task = ck.model_header.get("task").cloned().unwrap_or_default();
                if let Some((_, Some(t))) = a.given.iter().find(|(f, _)| f == "--task") {
                    if *t != task {
                        return Err(DlmError::invalid(
                            "--resume",
                            format!(
                                "{} is a checkpoint of task {task}, but --task {t} was given; \
                                 remove --task",
                                rp.display()
                            ),
                        ));
                    }
                }
                let mut merged = ck.args.clone();
                let mut explicit = Vec::new();
                for (flag, value) in &a.given {
                    if LOCAL_FLAGS.contains(&flag.as_str()) {
                        continue;
                    }
                    let Some(value) = value.clone() else {
                        return Err(DlmError::invalid(
                            flag,
                            "its value is not UTF-8 and cannot be compared with the checkpoint's",
                        ));
                    };
                    if !RUN_FLAGS.contains(&flag.as_str()) {
                        explicit.push((flag.clone(), value.clone()));
                    }
                    match merged.iter_mut().find(|(f, _)| f == flag) {
                        Some(slot) => slot.1 = value,
                        None => merged.push((flag.clone(), value)),
                    }
                }
                let mut args = parse_stored(&merged, rp)?;
                let structured = args.task.reads_files();
                let as_given: Vec<(String, Option<String>)> = merged
                    .iter()
                    .map(|(f, v)| (f.clone(), Some(v.clone())))
                    .collect();
                let stored = to_store(&as_given, structured)?;
                args.given = as_given;
                args.quiet = a.quiet;
                args.profile = a.profile;
                // The checkpoint is updated in place unless another file is named.
                args.checkpoint = Some(a.checkpoint.clone().unwrap_or_else(|| rp.clone()));
                args.resume = Some(rp.clone());
                args.check()?;
                if let Some(epochs) = args.epochs {
                    check_epochs(epochs, &ck.state, rp)?;
                }
                (
                    args,
                    Some(Resumed {
                        path: rp.clone(),
                        ck,
                        explicit,
                    }),
                    stored,
                )
            }
        };
        let save = args
            .save
            .as_deref()
            .map(|p| outputs::check("--save", p))
            .transpose()?;
        let plot = args
            .plot
            .as_deref()
            .map(|p| outputs::check("--plot", p))
            .transpose()?;
        let checkpoint = args
            .checkpoint
            .as_deref()
            .map(|p| outputs::check("--checkpoint", p))
            .transpose()?;
        if let Some(r) = &resume {
            for o in [&save, &plot].into_iter().flatten() {
                if outputs::same_file(o, &r.path) {
                    return Err(DlmError::invalid(
                        o.flag,
                        format!(
                            "{} is the checkpoint being resumed; give another file",
                            o.given.display()
                        ),
                    ));
                }
            }
        }
        let all: Vec<&Output> = [&save, &plot, &checkpoint].into_iter().flatten().collect();
        outputs::distinct(&all)?;
        Ok(RunSetup {
            args,
            resume,
            stored,
            save,
            plot,
            checkpoint,
        })
    }

    /// Where to write the plot.
    pub(crate) fn plot_path(&self) -> Option<&Path> {
        self.plot.as_ref().map(|o| o.target.as_path())
    }

    /// The trainer's starting state: fresh, or (resuming) the checkpoint's, after checking
    /// that `settings` (the run's resolved settings) equal the checkpoint's and that `epochs`
    /// (the total) covers what it trained; loads the checkpoint's model state into `model`.
    pub(crate) fn start(
        &self,
        model: &mut PerturbedModel,
        settings: &BTreeMap<String, String>,
        epochs: u64,
    ) -> Result<FitState> {
        let Some(r) = &self.resume else {
            return Ok(FitState::default());
        };
        let keys: std::collections::BTreeSet<&String> =
            settings.keys().chain(r.ck.settings.keys()).collect();
        let diffs: Vec<String> = keys
            .into_iter()
            .filter(|k| settings.get(*k) != r.ck.settings.get(*k))
            .map(|k| {
                let show =
                    |v: Option<&String>| v.map_or("(none)".to_string(), |v| format!("'{v}'"));
                if k.as_str() == "data_checksum" {
                    "the data (its checksum differs: the data file or data set changed)".to_string()
                } else {
                    format!(
                        "{k} {} (checkpoint: {})",
                        show(settings.get(k)),
                        show(r.ck.settings.get(k))
                    )
                }
            })
            .collect();
        if !diffs.is_empty() {
            let stored = &r.ck.args;
            let changed: Vec<String> = r
                .explicit
                .iter()
                .filter(|(f, v)| stored.iter().find(|(sf, _)| sf == f).map(|(_, sv)| sv) != Some(v))
                .map(|(f, v)| {
                    let was = stored
                        .iter()
                        .find(|(sf, _)| sf == f)
                        .map_or("not given".to_string(), |(_, sv)| format!("'{sv}'"));
                    format!("{f} '{v}' (checkpoint: {was})")
                })
                .collect();
            let cause = if changed.is_empty() {
                "; no option given now differs from the checkpoint's, so the data or the \
                 environment changed"
                    .to_string()
            } else {
                format!(
                    "; options given now: {}. A resumed run takes every setting from its \
                     checkpoint: remove them (only --epochs, --save, --plot, --json, \
                     --checkpoint and --checkpoint-every may change), or start a new run",
                    changed.join(", ")
                )
            };
            return Err(DlmError::invalid(
                "--resume",
                format!(
                    "{}: the run's settings would differ from the checkpoint's: {}{cause}",
                    r.path.display(),
                    diffs.join(", ")
                ),
            ));
        }
        check_epochs(epochs, &r.ck.state, &r.path)?;
        r.ck.restore(model, &r.path)?;
        Ok(r.ck.state.clone())
    }

    /// Trains from `state` (see [`RunSetup::start`]) with progress, checkpoints and clean
    /// interrupts; then writes the final checkpoint and the model (`header`: the model file's
    /// header without `epsilon`, which the model adds).
    pub(crate) fn train<T: Task>(
        &self,
        task: &mut T,
        model: fn(&T) -> &PerturbedModel,
        header: &BTreeMap<String, String>,
        settings: &BTreeMap<String, String>,
        options: &FitOptions,
        mut state: FitState,
    ) -> Result<Trained> {
        let quiet = self.args.quiet;
        let ck_path = self.checkpoint.as_ref().map(|o| o.target.as_path());
        let capture = |task: &T, state: &FitState| {
            Checkpoint::capture(header, settings, &self.stored, model(task), state)
        };
        if ck_path.is_some() {
            // Anything that cannot be stored shows up now, not after the first epochs.
            capture(task, &state)?.to_file()?;
        }
        if let (Some(r), false) = (&self.resume, quiet) {
            eprintln!(
                "resuming {} after {} epochs{}",
                r.path.display(),
                state.epochs_done,
                state
                    .cursor
                    .as_ref()
                    .map_or(String::new(), |c| format!(" and {} steps", c.step))
            );
        }
        let progress = Progress::new(options.max_epochs, quiet);
        progress.bar.set_position(state.epochs_done);
        let mut hooks = Hooks {
            progress,
            ck_path,
            every: self.args.checkpoint_every,
            last: Instant::now(),
            max_epochs: options.max_epochs,
            capture: &capture,
            budget: self.args.time_budget.map(|b| (Instant::now(), b)),
        };
        interrupt::arm();
        let epochs_before = state.epochs_done;
        if self.args.profile {
            profile::reset();
            profile::set_enabled(true);
        }
        let started = Instant::now();
        let report = fit_with(task, options, &mut state, &mut hooks);
        let seconds = started.elapsed().as_secs_f64();
        profile::set_enabled(false);
        hooks.progress.bar.finish_and_clear();
        let report = report?;
        let profile = self.args.profile.then(|| {
            let epochs = state.epochs_done - epochs_before;
            let r = profile::snapshot().report(epochs, seconds, rayon::current_num_threads());
            if !self.args.json {
                eprint!("{}", r.table());
            }
            r
        });
        if let Some(p) = ck_path {
            capture(task, &state)?.write(p)?;
        }
        if let Some(o) = &self.save {
            let mut m = ModelFile {
                header: header.clone(),
                sections: Vec::new(),
            };
            model(task).save_into(&mut m)?;
            m.write(&o.target)?;
        }
        let signal = interrupt::requested();
        let time_budget = report.interrupted && signal.is_none() && hooks.over_budget();
        if time_budget && !quiet {
            eprintln!(
                "time budget of {} s reached after {} epochs{}; evaluating the model as it is",
                self.args.time_budget.unwrap_or(0.0),
                state.epochs_done,
                state
                    .cursor
                    .as_ref()
                    .map_or(String::new(), |c| format!(" and {} steps", c.step))
            );
        } else if report.interrupted && !quiet {
            let at = state.cursor.as_ref().map_or(String::new(), |c| {
                format!(" and {} steps of the next", c.step)
            });
            let name = crate::signals::name(signal.unwrap_or(2));
            match &self.checkpoint {
                Some(o) => eprintln!(
                    "interrupted by {name} after {} epochs{at}: checkpoint written to {}; continue with `dlm train --resume {}`",
                    state.epochs_done,
                    o.given.display(),
                    o.given.display()
                ),
                None => eprintln!(
                    "interrupted by {name} after {} epochs{at} (no checkpoint: --checkpoint PATH keeps one); partial results follow",
                    state.epochs_done
                ),
            }
        }
        Ok(Trained {
            report,
            signal,
            time_budget,
            profile,
        })
    }
}

/// The `profile` object of `--json`: seconds per epoch of each phase, the epoch, the solver
/// floor and their ratio, and what the floor was computed from.
fn profile_json(p: &profile::Report) -> serde_json::Value {
    use crate::common::num;
    let phases: serde_json::Map<String, serde_json::Value> = p
        .phases
        .iter()
        .map(|(k, v)| (k.to_string(), num(*v)))
        .collect();
    serde_json::json!({
        "phases": phases,
        "epoch_seconds": num(p.epoch_seconds),
        "solver_floor_seconds": num(p.solver_floor_seconds),
        "floor_ratio": num(p.floor_ratio),
        "solves_per_epoch": num(p.solves_per_epoch),
        "seconds_per_solve": num(p.seconds_per_solve),
        "threads": p.threads,
        "epochs": p.epochs,
    })
}

/// Refuses a total of `epochs` below what the checkpoint at `path` has trained.
fn check_epochs(epochs: u64, state: &FitState, path: &Path) -> Result<()> {
    let done = state.epochs_done + state.cursor.is_some() as u64;
    if epochs < done || (epochs == state.epochs_done && state.cursor.is_some()) {
        return Err(DlmError::invalid(
            "--epochs",
            format!(
                "{epochs} is fewer than the {} epochs {} has {}trained; --epochs is the total",
                done,
                path.display(),
                if state.cursor.is_some() {
                    "(partly) "
                } else {
                    ""
                }
            ),
        ));
    }
    Ok(())
}

type Capture<'a, T> = dyn Fn(&T, &FitState) -> Result<Checkpoint> + 'a;

struct Hooks<'a, T> {
    progress: Progress,
    ck_path: Option<&'a Path>,
    every: Option<u64>,
    last: Instant,
    max_epochs: u64,
    capture: &'a Capture<'a, T>,
    /// `--time-budget`: when this invocation's training started, and the seconds it may run.
    budget: Option<(Instant, f64)>,
}

impl<T> Hooks<'_, T> {
    fn over_budget(&self) -> bool {
        self.budget
            .is_some_and(|(start, b)| start.elapsed().as_secs_f64() >= b)
    }
}

impl<T: Task> FitHooks<T> for Hooks<'_, T> {
    fn on_epoch(&mut self, record: &EpochRecord, _improved: bool) {
        self.progress.update(record);
    }

    fn stop(&self) -> bool {
        interrupt::requested().is_some() || self.over_budget()
    }

    fn after_epoch(&mut self, task: &T, state: &FitState) -> Result<()> {
        let Some(path) = self.ck_path else {
            return Ok(());
        };
        // The final checkpoint follows anyway.
        if state.stopped_early || state.epochs_done >= self.max_epochs || self.stop() {
            return Ok(());
        }
        let due = match self.every {
            Some(n) => state.epochs_done % n == 0,
            None => self.last.elapsed() >= CHECKPOINT_INTERVAL,
        };
        if due {
            (self.capture)(task, state)?.write(path)?;
            self.last = Instant::now();
        }
        Ok(())
    }
}
