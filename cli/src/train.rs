//! `dlm train` and `dlm eval`.

use crate::args::{EvalArgs, TaskKind, TrainArgs};
use crate::common::{num, parse_range, print_json};
use crate::plot;
use crate::run::RunSetup;
use dlm_core::{DlmError, DlmEstimator, Registry, Result, Spec};
use dlm_tasks::model_file::ModelFile;
use dlm_tasks::sort::{SortMetrics, SortSettings, SortTask};
use dlm_tasks::trainer::FitOptions;
use dlm_tasks::SigmaChoice;
use serde_json::json;
use std::collections::BTreeMap;
use std::process::ExitCode;

/// Everything needed to rebuild a sort model.
struct SortSpecs {
    n: usize,
    structure: String,
    noise: String,
    loss: String,
    mu: String,
    sigma_mode: SigmaChoice,
    sigma_net: String,
}

fn build_sort(reg: &Registry, specs: &SortSpecs, settings: SortSettings) -> Result<SortTask> {
    let structure = reg.structure(&specs.structure.parse()?)?;
    let noise = reg.noise(&specs.noise.parse()?)?;
    let loss = reg.loss(&specs.loss.parse()?)?;
    let mu = reg.scorer(&specs.mu.parse()?)?;
    let sigma = crate::common::sigma_model(reg, specs.sigma_mode, &specs.sigma_net)?;
    SortTask::new(settings, structure, noise, loss, mu, sigma)
}

fn metrics_json(m: &SortMetrics) -> serde_json::Value {
    json!({
        "n_sequences": m.n_sequences,
        "prop_wrong": num(m.prop_wrong),
        "prop_any_wrong": num(m.prop_any_wrong),
        "kendall_tau": num(m.kendall_tau),
    })
}

fn print_metrics(m: &SortMetrics, range: (f64, f64)) {
    eprintln!(
        "test ({} sequences, uniform [{}, {})): prop. wrong {:.4}, prop. any wrong {:.4}, Kendall tau {:.4}",
        m.n_sequences, range.0, range.1, m.prop_wrong, m.prop_any_wrong, m.kendall_tau
    );
}

/// `dlm train`: refuses options the task does not use, sets the run up (options merged with
/// a resumed checkpoint's, output paths checked), then runs the task.
pub fn train(reg: &Registry, a: &TrainArgs) -> Result<ExitCode> {
    crate::signals::install();
    if a.resume.is_none() {
        // (With --resume, the options merged with the checkpoint's are checked instead.)
        a.check()?;
    }
    let run = RunSetup::new(a)?;
    match run.args.task {
        TaskKind::Sort => train_sort(reg, &run),
        TaskKind::Knn => crate::knn::train_knn(reg, &run),
        TaskKind::Structured => crate::structured::train_structured(reg, &run),
        TaskKind::ShortestPath => crate::structured::train_shortest_path(reg, &run),
    }
}

/// The trainer's settings of `a` (the same for every task but the defaults).
pub(crate) fn fit_options(
    a: &TrainArgs,
    epochs: u64,
    patience: u64,
    patience_growth: f64,
) -> FitOptions {
    FitOptions {
        max_epochs: epochs,
        patience,
        patience_growth: a.patience_growth.unwrap_or(patience_growth),
        min_delta: 0.0,
        window: a.smooth,
    }
}

/// The settings every task shares, as a resumed run compares them: the model header (less
/// `epsilon`, which is state), the estimator's and the trainer's.
pub(crate) fn common_settings(
    header: &BTreeMap<String, String>,
    estimator: &DlmEstimator,
    fit: &FitOptions,
) -> BTreeMap<String, String> {
    let mut s = header.clone();
    s.insert("epsilon_init".into(), estimator.epsilon.to_string());
    s.insert("max_epsilon".into(), estimator.max_abs_epsilon.to_string());
    s.insert("escape_factor".into(), estimator.escape_factor.to_string());
    s.insert("patience".into(), fit.patience.to_string());
    s.insert("smooth".into(), fit.window.to_string());
    if fit.patience_growth != 0.0 {
        // (Absent when 0, so that checkpoints of runs without it still resume.)
        s.insert("patience_growth".into(), fit.patience_growth.to_string());
    }
    s.insert("min_delta".into(), fit.min_delta.to_string());
    s
}

fn train_sort(reg: &Registry, run: &RunSetup) -> Result<ExitCode> {
    let a = &run.args;
    let range = parse_range(a.test_range.as_deref().unwrap_or("0,1"))?;
    let test_size = a.test_size.unwrap_or(1000);
    if test_size == 0 {
        return Err(DlmError::invalid("--test-size", "must be at least 1"));
    }
    let n = a.n.unwrap_or(10);
    let batch = a.batch.unwrap_or(10);
    let (mu_lr, sigma_lr) = (a.mu_lr.unwrap_or(0.1), a.sigma_lr.unwrap_or(1e-6));
    let (epochs, patience) = (a.epochs.unwrap_or(2000), a.patience.unwrap_or(50));
    let est = crate::common::estimator_choice(reg, a.estimator.as_deref(), a.draws)?;
    let noise = est.noise(a.noise.as_deref(), n, "gumbel:variance=3");
    let sigma_mode = est.sigma(a.sigma, SigmaChoice::Learned);
    let draws = a.draws.unwrap_or(5);
    let specs = SortSpecs {
        n,
        structure: a.structure.clone().unwrap_or_else(|| "matching".into()),
        noise: noise.clone(),
        loss: a.loss.clone().unwrap_or_else(|| "hamming".into()),
        mu: a
            .mu
            .clone()
            .unwrap_or_else(|| format!("mlp:sizes=1-32-{n},opt=adam,lr={mu_lr},seed={}", a.seed)),
        sigma_mode,
        sigma_net: a.sigma_net.clone().unwrap_or_else(|| {
            crate::common::default_sigma_net(a, n, sigma_lr, a.seed.wrapping_add(1))
        }),
    };
    let settings = SortSettings {
        n,
        batch,
        train_size: a.train_size.unwrap_or(0),
        estimator: DlmEstimator {
            epsilon: a.epsilon.unwrap_or(-12.0),
            draws,
            escape_factor: 1.1,
            max_abs_epsilon: a.max_epsilon.unwrap_or(1e3),
        },
        seed: a.seed,
    };
    let mut task = build_sort(reg, &specs, settings)?;
    let estimator_spec = est.spec.clone();
    if let Some(e) = est.estimator {
        task.model_mut().set_estimator(e)?;
    }
    let mut header = sort_header(&task, &specs, a.seed);
    header.insert("estimator".into(), estimator_spec.clone());
    let fit = fit_options(a, epochs, patience, 1.0);
    let mut all = common_settings(&header, &task.settings().estimator, &fit);
    all.insert("train_size".into(), task.settings().train_size.to_string());
    all.insert("test_size".into(), test_size.to_string());
    all.insert("test_range".into(), format!("{},{}", range.0, range.1));
    crate::common::apply_eps_policy(a, task.model_mut(), &mut all)?;
    let state = run.start(task.model_mut(), &all, epochs)?;
    let trained = run.train(&mut task, SortTask::model, &header, &all, &fit, state)?;
    let report = &trained.report;
    let metrics = task.evaluate(test_size, range.0, range.1, a.seed)?;
    if !a.quiet {
        eprintln!(
            "trained {} epochs in {:.2} s ({:.1} us/epoch){}{}",
            report.epochs_run,
            report.seconds,
            1e6 * report.seconds / report.epochs_run.max(1) as f64,
            if report.stopped_early {
                ", stopped early"
            } else {
                ""
            },
            if report.interrupted {
                ", interrupted"
            } else {
                ""
            }
        );
        print_metrics(&metrics, range);
    }
    if let Some(p) = run.plot_path() {
        plot::training_svg(p, &report.history)?;
    }
    let last = report.history.last().cloned();
    if a.json {
        let mut v = json!({
            "task": "sort",
            "n": n,
            "batch": batch,
            "draws": draws,
            "estimator": estimator_spec,
            "noise": noise,
            "loss": specs.loss,
            "sigma_mode": sigma_mode.to_string(),
            "seed": a.seed,
            "epochs_run": report.epochs_run,
            "stopped_early": report.stopped_early,
            "best_epoch": report.best_epoch,
            "best_train_loss": num(report.best_loss),
            "train_seconds": num(report.seconds),
            "seconds_per_epoch": num(report.seconds / report.epochs_run as f64),
            "sigma_final": num(last.as_ref().map_or(f64::NAN, |r| r.sigma)),
            "epsilon_final": num(task.model().epsilon()),
            "zero_direction_rate_final": num(last.as_ref().map_or(f64::NAN, |r| r.zero_rate)),
            "test_range": [num(range.0), num(range.1)],
            "test": metrics_json(&metrics),
        });
        trained.add_json(&mut v);
        print_json(&v);
    }
    Ok(trained.exit_code())
}

/// The header of a saved sort model (without `epsilon`, which the model adds).
fn sort_header(task: &SortTask, specs: &SortSpecs, seed: u64) -> BTreeMap<String, String> {
    let mut h = BTreeMap::new();
    h.insert("task".into(), "sort".into());
    h.insert("n".into(), specs.n.to_string());
    h.insert("structure".into(), specs.structure.clone());
    h.insert("noise".into(), specs.noise.clone());
    h.insert("loss".into(), specs.loss.clone());
    h.insert("mu".into(), specs.mu.clone());
    h.insert("sigma_mode".into(), specs.sigma_mode.to_string());
    h.insert("sigma_net".into(), specs.sigma_net.clone());
    h.insert("batch".into(), task.settings().batch.to_string());
    h.insert("draws".into(), task.settings().estimator.draws.to_string());
    h.insert("seed".into(), seed.to_string());
    h
}

/// `dlm eval`: rebuilds a saved model (any task) and evaluates it.
pub fn eval(reg: &Registry, a: &EvalArgs) -> Result<ExitCode> {
    let m = ModelFile::read(&a.load)?;
    let p = &a.load;
    let task_name = m.get("task", p)?;
    if ["sort", "knn", "structured", "shortest-path"].contains(&task_name) {
        a.check_for(task_name)?;
    }
    if task_name == "structured" || task_name == "shortest-path" {
        return crate::structured::eval_structured(reg, &m, p, a.data.as_deref(), a.json);
    }
    if task_name == "knn" {
        let dir = a
            .data_dir
            .clone()
            .unwrap_or_else(dlm_tasks::data::default_data_dir);
        return crate::knn::eval_knn(reg, &m, p, &dir, a.json);
    }
    if task_name != "sort" {
        return Err(DlmError::format(
            "model file",
            p,
            format!("unknown task '{task_name}'"),
        ));
    }
    let range = parse_range(a.test_range.as_deref().unwrap_or("0,1"))?;
    let test_size = a.test_size.unwrap_or(1000);
    let n: usize = m.parse("n", p)?;
    let seed: u64 = m.parse("seed", p)?;
    let specs = SortSpecs {
        n,
        structure: m.get("structure", p)?.into(),
        noise: m.get("noise", p)?.into(),
        loss: m.get("loss", p)?.into(),
        mu: m.get("mu", p)?.into(),
        sigma_mode: m.get("sigma_mode", p)?.parse()?,
        sigma_net: m.get("sigma_net", p)?.into(),
    };
    let _: Spec = specs.mu.parse()?;
    let settings = SortSettings {
        n,
        batch: m.parse("batch", p)?,
        train_size: 0,
        estimator: DlmEstimator {
            epsilon: m.parse("epsilon", p)?,
            draws: m.parse("draws", p)?,
            ..DlmEstimator::default()
        },
        seed,
    };
    let mut task = build_sort(reg, &specs, settings)?;
    task.model_mut().load_from(&m, p)?;
    let test_seed = a.seed.unwrap_or(seed);
    let metrics = task.evaluate(test_size, range.0, range.1, test_seed)?;
    if a.json {
        print_json(&json!({
            "task": "sort",
            "n": n,
            "model": a.load.display().to_string(),
            "seed": test_seed,
            "test_range": [num(range.0), num(range.1)],
            "test": metrics_json(&metrics),
        }));
    } else {
        print_metrics(&metrics, range);
    }
    Ok(ExitCode::SUCCESS)
}
