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

fn metrics_json(m: &StructuredMetrics) -> serde_json::Value {
    json!({
        "n_examples": m.n_examples,
        "mean_loss": num(m.mean_loss),
        "exact_match": num(m.exact_match),
    })
}

fn print_metrics(what: &str, m: &StructuredMetrics) {
    eprintln!(
        "{what} ({} examples): mean loss {:.4}, exact match {:.2}%",
        m.n_examples,
        m.mean_loss,
        100.0 * m.exact_match
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
    let (n_train, n_test) = (data.train.len(), data.test.len());
    let m: usize = data.shape.iter().product();
    let mu_lr = a.mu_lr.unwrap_or(0.01);
    let sigma_lr = a.sigma_lr.unwrap_or(1e-5);
    let sigma_mode = a.sigma.unwrap_or(SigmaChoice::Learned);
    let specs = StructuredSpecs {
        structure,
        loss,
        noise: a.noise.clone().unwrap_or_else(|| "gumbel".into()),
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
                format!(
                    "mlp:sizes={f}-1,out=softplus,opt=sgd,lr={sigma_lr},seed={}",
                    a.seed.wrapping_add(1)
                )
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
    let mut header = BTreeMap::new();
    let h = &mut header;
    h.insert("task".into(), "structured".into());
    h.insert(
        "data".into(),
        stored_path(&data_path).to_string_lossy().into_owned(),
    );
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
    if let SplitSource::Fraction(f) = task.data().split {
        h.insert("test_fraction".into(), f.to_string());
    }
    let epochs = a.epochs.unwrap_or(50);
    let fit = fit_options(a, epochs, a.patience.unwrap_or(0));
    let mut all = common_settings(&header, &task.settings().estimator, &fit);
    // The data's content matters, not where it lies: a moved file resumes with --data.
    all.remove("data");
    all.insert("data_checksum".into(), checksum_file(&data_path)?);
    // Before any training or checkpoint state: a resumed run reports the same untrained metrics.
    let untrained = task.evaluate(Part::Test)?;
    let state = run.start(task.model_mut(), &all, epochs)?;
    let trained = run.train(&mut task, StructuredTask::model, &header, &all, &fit, state)?;
    let report = &trained.report;
    let test = task.evaluate(Part::Test)?;
    let train = task.evaluate(Part::Train)?;
    if !a.quiet {
        eprintln!(
            "trained {} epochs in {:.2} s on {} ({n_train} train / {n_test} test examples, potentials {:?}){}{}",
            report.epochs_run,
            report.seconds,
            data_path.display(),
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
            "task": "structured",
            "data": data_path.display().to_string(),
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
    // The model's own split: x_test when the file has it, else the held-out fraction it was
    // trained with (same seed, same examples).
    let split = match m.header.get("test_fraction") {
        Some(_) => TestSplit::Auto(m.parse("test_fraction", p)?),
        None => TestSplit::default(),
    };
    let data_path = match data {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from(m.get("data", p)?),
    };
    let data = StructuredData::load(&data_path, split, seed).map_err(|e| {
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
    })?;
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
    let test = task.evaluate(Part::Test)?;
    if json_out {
        print_json(&json!({
            "task": "structured",
            "model": p.display().to_string(),
            "data": data_path.display().to_string(),
            "structure": specs.structure,
            "loss": specs.loss,
            "split": split_json(task.data()),
            "n_test": test.n_examples,
            "test": metrics_json(&test),
        }));
    } else {
        print_metrics("test", &test);
    }
    Ok(ExitCode::SUCCESS)
}
