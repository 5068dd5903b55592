//! `dlm train` and `dlm eval`.

use crate::args::{EvalArgs, TaskKind, TrainArgs};
use crate::common::{check_writable, num, parse_range, print_json, Progress};
use crate::plot;
use dlm_core::{DlmError, DlmEstimator, Registry, Result, Spec};
use dlm_tasks::model_file::ModelFile;
use dlm_tasks::sort::{SortMetrics, SortSettings, SortTask};
use dlm_tasks::trainer::{fit, EpochRecord, FitOptions, FitReport};
use dlm_tasks::SigmaChoice;
use serde_json::json;
use std::path::Path;
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

/// `dlm train`: refuses options the task does not use, then runs the task.
pub fn train(reg: &Registry, a: &TrainArgs) -> Result<ExitCode> {
    a.check()?;
    match a.task {
        TaskKind::Sort => train_sort(reg, a),
        TaskKind::Knn => crate::knn::train_knn(reg, a),
        TaskKind::Structured => crate::structured::train_structured(reg, a),
    }
}

fn train_sort(reg: &Registry, a: &TrainArgs) -> Result<ExitCode> {
    let range = parse_range(a.test_range.as_deref().unwrap_or("0,1"))?;
    let test_size = a.test_size.unwrap_or(1000);
    if test_size == 0 {
        return Err(DlmError::invalid("--test-size", "must be at least 1"));
    }
    let n = a.n.unwrap_or(10);
    let batch = a.batch.unwrap_or(10);
    let (mu_lr, sigma_lr) = (a.mu_lr.unwrap_or(0.1), a.sigma_lr.unwrap_or(1e-6));
    let (epochs, patience) = (a.epochs.unwrap_or(2000), a.patience.unwrap_or(50));
    let noise = a
        .noise
        .clone()
        .unwrap_or_else(|| "gumbel:variance=3".into());
    let sigma_mode = a.sigma.unwrap_or(SigmaChoice::Learned);
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
            format!(
                "mlp:sizes={n}-1,out=softplus,opt=sgd,lr={sigma_lr},seed={}",
                a.seed.wrapping_add(1)
            )
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
    if let Some(p) = &a.save {
        check_writable(p)?;
    }
    if let Some(p) = &a.plot {
        check_writable(p)?;
    }
    let mut progress = Progress::new(epochs, a.quiet);
    let report: FitReport = fit(
        &mut task,
        &FitOptions {
            max_epochs: epochs,
            patience,
            min_delta: 0.0,
            window: a.smooth,
        },
        &mut |r: &EpochRecord, _improved: bool| progress.update(r),
    )?;
    progress.bar.finish_and_clear();
    let metrics = task.evaluate(test_size, range.0, range.1, a.seed)?;
    if !a.quiet {
        eprintln!(
            "trained {} epochs in {:.2} s ({:.1} us/epoch){}",
            report.epochs_run,
            report.seconds,
            1e6 * report.seconds / report.epochs_run as f64,
            if report.stopped_early {
                ", stopped early"
            } else {
                ""
            }
        );
        print_metrics(&metrics, range);
    }
    if let Some(p) = &a.save {
        save_sort(p, &task, &specs, a)?;
    }
    if let Some(p) = &a.plot {
        plot::training_svg(p, &report.history)?;
    }
    let last = report.history.last().cloned();
    if a.json {
        print_json(&json!({
            "task": "sort",
            "n": n,
            "batch": batch,
            "draws": draws,
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
        }));
    }
    Ok(ExitCode::SUCCESS)
}

fn save_sort(path: &Path, task: &SortTask, specs: &SortSpecs, a: &TrainArgs) -> Result<()> {
    let mut m = ModelFile::default();
    let h = &mut m.header;
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
    h.insert("seed".into(), a.seed.to_string());
    task.model().save_into(&mut m)?;
    m.write(path)
}

/// `dlm eval`: rebuilds a saved model (any task) and evaluates it.
pub fn eval(reg: &Registry, a: &EvalArgs) -> Result<ExitCode> {
    let m = ModelFile::read(&a.load)?;
    let p = &a.load;
    let task_name = m.get("task", p)?;
    if ["sort", "knn", "structured"].contains(&task_name) {
        a.check_for(task_name)?;
    }
    if task_name == "structured" {
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
