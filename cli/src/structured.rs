//! `dlm train --task structured` and evaluation of saved structured models: any registered
//! structure and loss, trained on a supervised `.npz` file (see `dlm_tasks::structured`).

use crate::args::TrainArgs;
use crate::common::{num, print_json, sigma_model};
use crate::plot;
use crate::run::RunSetup;
use crate::train::{common_settings, fit_options};
use dlm_core::{DlmError, DlmEstimator, Registry, Result};
use dlm_tasks::checkpoint::checksum_file;
use dlm_tasks::model_file::ModelFile;
use dlm_tasks::shortest_path;
use dlm_tasks::structured::{
    Part, SplitSource, StructuredData, StructuredMetrics, StructuredSettings, StructuredTask,
    TestSplit,
};
use dlm_tasks::SigmaChoice;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Everything needed to rebuild a structured model (what the model file's header stores).
struct StructuredSpecs {
    structure: String,
    loss: String,
    noise: String,
    mu: String,
    sigma_mode: SigmaChoice,
    sigma_net: String,
}

fn build(
    reg: &Registry,
    specs: &StructuredSpecs,
    settings: StructuredSettings,
    data: StructuredData,
) -> Result<StructuredTask> {
    let structure = reg.structure(&specs.structure.parse()?)?;
    let noise = reg.noise(&specs.noise.parse()?)?;
    let loss = reg.loss(&specs.loss.parse()?)?;
    let mu = reg.scorer(&specs.mu.parse()?)?;
    let sigma = sigma_model(reg, specs.sigma_mode, &specs.sigma_net)?;
    StructuredTask::new(settings, data, structure, noise, loss, mu, sigma)
}

/// The one feature size of `[N, F]` data, for the default networks.
fn flat_features(data: &StructuredData, what: &str, flag: &str) -> Result<usize> {
    match data.features.as_slice() {
        [f] => Ok(*f),
        other => Err(DlmError::invalid(
            flag,
            format!(
                "the default {what} (an MLP) needs features x of shape [N, F], but {} has \
                 examples of shape {other:?}; flatten x or give {flag}",
                data.source.display()
            ),
        )),
    }
}

/// A split's metrics, with PyEPO's normalized regret for shortest-path runs.
struct Metrics {
    m: StructuredMetrics,
    normalized_regret: Option<f64>,
}

fn evaluate(task: &mut StructuredTask, part: Part, regret: bool) -> Result<Metrics> {
    Ok(Metrics {
        m: task.evaluate(part)?,
        normalized_regret: if regret {
            Some(shortest_path::normalized_regret(task, part)?)
        } else {
            None
        },
    })
}

fn metrics_json(m: &Metrics) -> serde_json::Value {
    let mut v = json!({
        "n_examples": m.m.n_examples,
        "mean_loss": num(m.m.mean_loss),
        "exact_match": num(m.m.exact_match),
    });
    if let Some(r) = m.normalized_regret {
        v["normalized_regret"] = num(r);
    }
    v
}

fn print_metrics(what: &str, m: &Metrics) {
    let regret = m
        .normalized_regret
        .map(|r| format!(", normalized regret {:.2}%", 100.0 * r))
        .unwrap_or_default();
    eprintln!(
        "{what} ({} examples): mean loss {:.4}, exact match {:.2}%{regret}",
        m.m.n_examples,
        m.m.mean_loss,
        100.0 * m.m.exact_match
    );
}

fn split_json(data: &StructuredData) -> serde_json::Value {
    match data.split {
        SplitSource::Arrays => json!("x_test"),
        SplitSource::Fraction(f) => json!({ "test_fraction": num(f) }),
    }
}

/// The data path as stored in a model: absolute when it can be resolved, so that `dlm eval`
/// finds it from another directory.
fn stored_path(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Where a structured run's data come from, and what its model file must remember to find
/// them again.
pub(crate) struct Source {
    /// The task name (`structured` or `shortest-path`).
    task: &'static str,
    /// The data, split.
    data: StructuredData,
    /// How to describe the data in messages and JSON (a path, or the generator's settings).
    label: String,
    /// Model-header entries that rebuild the data (a path, or the generator's settings).
    header: BTreeMap<String, String>,
    /// What a resumed run must find unchanged (a checksum of the file, or the generator's
    /// settings).
    identity: BTreeMap<String, String>,
    /// The structure and loss specs.
    structure: String,
    loss: String,
    /// Whether to report PyEPO's normalized regret (the shortest-path task).
    regret: bool,
    /// Active parts of a solution, for I-MLE's Sum-of-Gamma noise (`None`: not known, the
    /// size of the first training example's truth is used).
    parts: Option<usize>,
}

/// `dlm train --task structured` (options already checked by [`TrainArgs::check`]).
pub fn train_structured(reg: &Registry, run: &RunSetup) -> Result<ExitCode> {
    let a: &TrainArgs = &run.args;
    let need = |flag: &str, what: &str| {
        DlmError::invalid(
            flag,
            format!(
                "--task structured needs {what} (see docs/cli.md, `dlm train --task structured`)"
            ),
        )
    };
    let data_path = PathBuf::from(
        a.data
            .as_deref()
            .ok_or_else(|| need("--data", "a data file: --data FILE.npz"))?,
    );
    let structure = a.structure.clone().ok_or_else(|| {
        need(
            "--structure",
            "the structure: --structure SPEC (any registered one, e.g. grid-path from the \
             example plugin)",
        )
    })?;
    let loss = a
        .loss
        .clone()
        .ok_or_else(|| need("--loss", "the task loss: --loss SPEC"))?;
    let split = a
        .test_fraction
        .map_or_else(TestSplit::default, TestSplit::Fraction);
    let data = StructuredData::load(&data_path, split, a.seed)?;
    let mut header = BTreeMap::new();
    header.insert(
        "data".into(),
        stored_path(&data_path).to_string_lossy().into_owned(),
    );
    if let SplitSource::Fraction(f) = data.split {
        header.insert("test_fraction".into(), f.to_string());
    }
    // The data's content matters, not where it lies: a moved file resumes with --data.
    let mut identity = header.clone();
    identity.remove("data");
    identity.insert("data_checksum".into(), checksum_file(&data_path)?);
    train_source(
        reg,
        run,
        Source {
            task: "structured",
            data,
            label: data_path.display().to_string(),
            header,
            identity,
            structure,
            loss,
            regret: false,
            parts: None,
        },
    )
}

/// `dlm train --task shortest-path`: PyEPO's generator (or a `.npz` of `x` and `c`), the
/// `grid-edges` structure and the `regret` loss, reporting the normalized regret.
pub fn train_shortest_path(reg: &Registry, run: &RunSetup) -> Result<ExitCode> {
    let a: &TrainArgs = &run.args;
    let grid = match &a.grid {
        Some(g) => Some(parse_grid(g)?),
        None => None,
    };
    let src = path_source(
        a.data.as_deref().map(Path::new),
        grid,
        &PathSettings {
            train: a.train_size.unwrap_or(1000),
            test: a.test_size.unwrap_or(1000),
            deg: a.deg.unwrap_or(1),
            noise_width: a.noise_width.unwrap_or(0.5),
            features: a.features.unwrap_or(5),
            test_fraction: a.test_fraction,
        },
        a.seed,
    )?;
    train_source(reg, run, src)
}

/// The generator's settings of a shortest-path run.
pub(crate) struct PathSettings {
    train: usize,
    test: usize,
    deg: u32,
    noise_width: f64,
    features: usize,
    test_fraction: Option<f64>,
}

fn parse_grid(s: &str) -> Result<(usize, usize)> {
    let v: Vec<usize> = crate::common::parse_list(s, "--grid")?;
    match v.as_slice() {
        [r, c] if *r >= 1 && *c >= 1 && r * c >= 2 => Ok((*r, *c)),
        _ => Err(DlmError::invalid(
            "--grid",
            format!("'{s}': write ROWS,COLS of nodes, e.g. 5,5 (at least two nodes)"),
        )),
    }
}

/// The data of a shortest-path run: from `file` (x and c, PyEPO's layout), or generated.
fn path_source(
    file: Option<&Path>,
    grid: Option<(usize, usize)>,
    s: &PathSettings,
    seed: u64,
) -> Result<Source> {
    let mut header = BTreeMap::new();
    let (train, test, label, identity) = match file {
        Some(path) => {
            let f = shortest_path::load_npz(path, grid)?;
            header.insert(
                "data".into(),
                stored_path(path).to_string_lossy().into_owned(),
            );
            let (train, test, split) = match f.test {
                Some(test) => (f.data, test, "x_test".to_string()),
                None => {
                    let frac = s.test_fraction.unwrap_or(0.2);
                    if !(frac > 0.0 && frac < 1.0) {
                        return Err(DlmError::invalid(
                            "--test-fraction",
                            format!("{frac}: must lie strictly between 0 and 1"),
                        ));
                    }
                    let n_test = ((f.data.len() as f64 * frac).round() as usize).max(1);
                    let (a, b) = f.data.split_at(f.data.len().saturating_sub(n_test))?;
                    header.insert("test_fraction".into(), frac.to_string());
                    (a, b, format!("last {n_test} instances"))
                }
            };
            let mut identity = header.clone();
            identity.remove("data");
            identity.insert("data_checksum".into(), checksum_file(path)?);
            header.insert("grid".into(), format!("{},{}", train.grid.0, train.grid.1));
            identity.insert("grid".into(), format!("{},{}", train.grid.0, train.grid.1));
            let label = format!("{} (test: {split})", path.display());
            (train, test, label, identity)
        }
        None => {
            let grid = grid.unwrap_or((5, 5));
            for (k, v) in [
                ("generator", "pyepo-shortest-path".to_string()),
                ("grid", format!("{},{}", grid.0, grid.1)),
                ("deg", s.deg.to_string()),
                ("noise_width", s.noise_width.to_string()),
                ("features", s.features.to_string()),
                ("train_size", s.train.to_string()),
                ("test_size", s.test.to_string()),
            ] {
                header.insert(k.into(), v);
            }
            if s.train == 0 || s.test == 0 {
                return Err(DlmError::invalid(
                    "--train-size/--test-size",
                    "both must be at least 1",
                ));
            }
            let all = shortest_path::gen_data(
                s.train + s.test,
                s.features,
                grid,
                s.deg,
                s.noise_width,
                seed,
            )?;
            let (train, test) = all.split_at(s.train)?;
            let label = format!(
                "PyEPO generator ({}x{} grid, deg {}, noise half-width {}, {} features)",
                grid.0, grid.1, s.deg, s.noise_width, s.features
            );
            (train, test, label, header.clone())
        }
    };
    let data = shortest_path::structured_data(
        &train,
        &test,
        PathBuf::from(
            header
                .get("data")
                .cloned()
                .unwrap_or_else(|| "generated".into()),
        ),
        SplitSource::Arrays,
    )?;
    Ok(Source {
        task: "shortest-path",
        data,
        label,
        header,
        identity,
        structure: format!("grid-edges:rows={},cols={}", train.grid.0, train.grid.1),
        loss: "regret".into(),
        regret: true,
        parts: Some(train.grid.0 + train.grid.1 - 2),
    })
}

/// Trains and reports a structured run on `src`.
fn train_source(reg: &Registry, run: &RunSetup, src: Source) -> Result<ExitCode> {
    let a: &TrainArgs = &run.args;
    let Source {
        task: task_name,
        data,
        label,
        header: data_header,
        identity,
        structure,
        loss,
        regret,
        parts,
    } = src;
    let parts = parts.unwrap_or_else(|| data.train.targets.first().map_or(1, |t| t.truth.len()));
    let (n_train, n_test) = (data.train.len(), data.test.len());
    let m: usize = data.shape.iter().product();
    let mu_lr = a.mu_lr.unwrap_or(0.01);
    let sigma_lr = a.sigma_lr.unwrap_or(1e-5);
    let est = crate::common::estimator_choice(reg, a.estimator.as_deref(), a.draws)?;
    let sigma_mode = est.sigma(a.sigma, SigmaChoice::Learned);
    let specs = StructuredSpecs {
        structure,
        loss,
        noise: est.noise(a.noise.as_deref(), parts, "gumbel"),
        mu: match &a.mu {
            Some(s) => s.clone(),
            None => {
                let f = flat_features(&data, "mu", "--mu")?;
                format!("mlp:sizes={f}-{m},opt=adam,lr={mu_lr},seed={}", a.seed)
            }
        },
        sigma_mode,
        sigma_net: match (&a.sigma_net, sigma_mode) {
            (Some(s), _) => s.clone(),
            (None, SigmaChoice::Learned) => {
                let f = flat_features(&data, "sigma network", "--sigma-net")?;
                crate::common::default_sigma_net(a, f, sigma_lr, a.seed.wrapping_add(1))
            }
            (None, _) => String::new(),
        },
    };
    let draws = a.draws.unwrap_or(1);
    let settings = StructuredSettings {
        batch: a.batch.unwrap_or(32),
        estimator: DlmEstimator {
            epsilon: a.epsilon.unwrap_or(-1.0),
            draws,
            escape_factor: 1.1,
            max_abs_epsilon: a.max_epsilon.unwrap_or(1e3),
        },
        seed: a.seed,
    };
    let mut task = build(reg, &specs, settings, data)?;
    let estimator_spec = est.spec.clone();
    if let Some(e) = est.estimator {
        task.model_mut().set_estimator(e)?;
    }
    let mut header = data_header;
    let h = &mut header;
    h.insert("task".into(), task_name.into());
    h.insert("estimator".into(), estimator_spec.clone());
    h.insert("structure".into(), specs.structure.clone());
    h.insert("loss".into(), specs.loss.clone());
    h.insert("noise".into(), specs.noise.clone());
    h.insert("mu".into(), specs.mu.clone());
    h.insert("sigma_mode".into(), specs.sigma_mode.to_string());
    h.insert("sigma_net".into(), specs.sigma_net.clone());
    h.insert("batch".into(), task.settings().batch.to_string());
    h.insert("draws".into(), draws.to_string());
    h.insert("seed".into(), a.seed.to_string());
    h.insert("shape".into(), join(&task.data().shape));
    h.insert("features".into(), join(&task.data().features));
    let epochs = a.epochs.unwrap_or(50);
    let fit = fit_options(a, epochs, a.patience.unwrap_or(0), 0.0);
    let mut all = common_settings(&header, &task.settings().estimator, &fit);
    all.remove("data");
    all.extend(identity);
    // Before any training or checkpoint state: a resumed run reports the same untrained metrics.
    let untrained = evaluate(&mut task, Part::Test, regret)?;
    crate::common::apply_eps_policy(a, task.model_mut(), &mut all)?;
    let state = run.start(task.model_mut(), &all, epochs)?;
    let trained = run.train(&mut task, StructuredTask::model, &header, &all, &fit, state)?;
    let report = &trained.report;
    let test = evaluate(&mut task, Part::Test, regret)?;
    let train = evaluate(&mut task, Part::Train, regret)?;
    if !a.quiet {
        eprintln!(
            "trained {} epochs in {:.2} s on {} ({n_train} train / {n_test} test examples, potentials {:?}){}{}",
            report.epochs_run,
            report.seconds,
            label,
            task.data().shape,
            if report.stopped_early {
                ", stopped early"
            } else {
                ""
            },
            if report.interrupted { ", interrupted" } else { "" }
        );
        print_metrics("untrained, test", &untrained);
        print_metrics("trained, train", &train);
        print_metrics("trained, test", &test);
    }
    if let Some(p) = run.plot_path() {
        plot::training_svg(p, &report.history)?;
    }
    if a.json {
        let last = report.history.last().cloned();
        let mut v = json!({
            "task": task_name,
            "data": label,
            "structure": specs.structure,
            "loss": specs.loss,
            "noise": specs.noise,
            "mu": specs.mu,
            "sigma_mode": sigma_mode.to_string(),
            "shape": task.data().shape,
            "features": task.data().features,
            "targets": task.data().form.as_str(),
            "split": split_json(task.data()),
            "n_train": n_train,
            "n_test": n_test,
            "batch": task.settings().batch,
            "draws": draws,
            "estimator": estimator_spec,
            "seed": a.seed,
            "epochs_run": report.epochs_run,
            "stopped_early": report.stopped_early,
            "best_epoch": report.best_epoch,
            "best_train_loss": num(report.best_loss),
            "train_seconds": num(report.seconds),
            "seconds_per_epoch": num(report.seconds / report.epochs_run as f64),
            "train_loss_final": num(last.as_ref().map_or(f64::NAN, |r| r.loss)),
            "sigma_final": num(last.as_ref().map_or(f64::NAN, |r| r.sigma)),
            "epsilon_final": num(task.model().epsilon()),
            "zero_direction_rate_final": num(last.as_ref().map_or(f64::NAN, |r| r.zero_rate)),
            "untrained": metrics_json(&untrained),
            "train": metrics_json(&train),
            "test": metrics_json(&test),
        });
        trained.add_json(&mut v);
        print_json(&v);
    }
    Ok(trained.exit_code())
}

fn join(v: &[usize]) -> String {
    v.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

/// `dlm eval` of a saved structured model on the test split of its data file (`data`, or the
/// file stored in the model).
pub fn eval_structured(
    reg: &Registry,
    m: &ModelFile,
    p: &Path,
    data: Option<&Path>,
    json_out: bool,
) -> Result<ExitCode> {
    let specs = StructuredSpecs {
        structure: m.get("structure", p)?.into(),
        loss: m.get("loss", p)?.into(),
        noise: m.get("noise", p)?.into(),
        mu: m.get("mu", p)?.into(),
        sigma_mode: m.get("sigma_mode", p)?.parse()?,
        sigma_net: m.get("sigma_net", p)?.into(),
    };
    let seed: u64 = m.parse("seed", p)?;
    let task_name = m.get("task", p)?;
    let regret = task_name == "shortest-path";
    let stored_data = || -> Result<PathBuf> {
        match data {
            Some(d) => Ok(d.to_path_buf()),
            None => Ok(PathBuf::from(m.get("data", p)?)),
        }
    };
    let gone = |e: DlmError, data_path: &Path| {
        if data.is_none() && !data_path.exists() {
            DlmError::invalid(
                "--data",
                format!(
                    "the model's data file {} is gone; pass it with --data FILE.npz ({e})",
                    data_path.display()
                ),
            )
        } else {
            e
        }
    };
    let (data, data_label) = if regret {
        let grid = parse_grid(m.get("grid", p)?)?;
        let src = if m.header.contains_key("generator") {
            if data.is_some() {
                return Err(DlmError::invalid(
                    "--data",
                    "this model was trained on generated data, which eval regenerates from the \
                     settings stored in the model; remove --data",
                ));
            }
            path_source(
                None,
                Some(grid),
                &PathSettings {
                    train: m.parse("train_size", p)?,
                    test: m.parse("test_size", p)?,
                    deg: m.parse("deg", p)?,
                    noise_width: m.parse("noise_width", p)?,
                    features: m.parse("features", p)?,
                    test_fraction: None,
                },
                seed,
            )?
        } else {
            let data_path = stored_data()?;
            let frac = match m.header.get("test_fraction") {
                Some(_) => Some(m.parse("test_fraction", p)?),
                None => None,
            };
            let settings = PathSettings {
                train: 0,
                test: 0,
                deg: 0,
                noise_width: 0.0,
                features: 0,
                test_fraction: frac,
            };
            path_source(Some(&data_path), Some(grid), &settings, seed)
                .map_err(|e| gone(e, &data_path))?
        };
        (src.data, src.label)
    } else {
        // The model's own split: x_test when the file has it, else the held-out fraction it
        // was trained with (same seed, same examples).
        let split = match m.header.get("test_fraction") {
            Some(_) => TestSplit::Auto(m.parse("test_fraction", p)?),
            None => TestSplit::default(),
        };
        let data_path = stored_data()?;
        let d = StructuredData::load(&data_path, split, seed).map_err(|e| gone(e, &data_path))?;
        (d, data_path.display().to_string())
    };
    let data_path = PathBuf::from(&data_label);
    for (key, got) in [("shape", &data.shape), ("features", &data.features)] {
        let stored = m.get(key, p)?;
        if stored != join(got) {
            return Err(DlmError::invalid(
                "--data",
                format!(
                    "{} has {key} [{}], but the model was trained on {key} [{stored}]",
                    data_path.display(),
                    join(got)
                ),
            ));
        }
    }
    let settings = StructuredSettings {
        batch: m.parse("batch", p)?,
        estimator: DlmEstimator {
            epsilon: m.parse("epsilon", p)?,
            draws: m.parse("draws", p)?,
            ..DlmEstimator::default()
        },
        seed,
    };
    let mut task = build(reg, &specs, settings, data)?;
    task.model_mut().load_from(m, p)?;
    let test = evaluate(&mut task, Part::Test, regret)?;
    if json_out {
        print_json(&json!({
            "task": task_name,
            "model": p.display().to_string(),
            "data": data_label,
            "structure": specs.structure,
            "loss": specs.loss,
            "split": split_json(task.data()),
            "n_test": test.m.n_examples,
            "test": metrics_json(&test),
        }));
    } else {
        print_metrics("test", &test);
    }
    Ok(ExitCode::SUCCESS)
}
