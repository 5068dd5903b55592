//! `dlm train --task knn` and evaluation of saved k-NN models.

use crate::args::TrainArgs;
use crate::common::{num, parse_list, print_json};
use crate::plot;
use crate::run::RunSetup;
use crate::train::{common_settings, fit_options};
use dlm_core::{DlmError, DlmEstimator, Registry, Result, Spec};
use dlm_tasks::checkpoint::Checksum;
use dlm_tasks::data;
use dlm_tasks::knn::{KnnMetrics, KnnSettings, KnnTask};
use dlm_tasks::model_file::ModelFile;
use dlm_tasks::SigmaChoice;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

struct KnnSpecs {
    data: String,
    k: usize,
    noise: String,
    mu: String,
    sigma_mode: SigmaChoice,
    sigma_net: String,
}

/// Builds the task on `split`, the data set `specs.data` loaded once by the caller.
fn build(
    reg: &Registry,
    specs: &KnnSpecs,
    settings: KnnSettings,
    split: data::Split,
) -> Result<KnnTask> {
    let structure = reg.structure(&Spec::named("topk").with("k", specs.k))?;
    let noise = reg.noise(&specs.noise.parse()?)?;
    let loss = reg.loss(&Spec::named("label-mismatch"))?;
    let mu = reg.scorer(&specs.mu.parse()?)?;
    let sigma = crate::common::sigma_model(reg, specs.sigma_mode, &specs.sigma_net)?;
    KnnTask::new(settings, split, structure, noise, loss, mu, sigma)
}

fn accuracy_json(m: &KnnMetrics) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    for (k, a) in &m.accuracy {
        o.insert(k.to_string(), num(*a));
    }
    serde_json::Value::Object(o)
}

fn print_accuracy(what: &str, m: &KnnMetrics) {
    let parts: Vec<String> = m
        .accuracy
        .iter()
        .map(|(k, a)| format!("k={k}: {:.2}%", 100.0 * a))
        .collect();
    eprintln!("{what} ({} test images): {}", m.n_test, parts.join(", "));
}

/// A checksum of a data set split (pixels, labels, shapes), so that a run does not resume on
/// other data.
fn split_checksum(split: &data::Split) -> String {
    let mut c = Checksum::default();
    for d in [&split.train, &split.test] {
        for v in d.images.shape().iter().chain(&d.shape).chain([&d.classes]) {
            c.update(&(*v as u64).to_le_bytes());
        }
        c.update_f64s(d.images.iter().copied());
        c.update(&d.labels);
    }
    c.hex()
}

/// `dlm train --task knn` (options already checked by [`TrainArgs::check`]).
pub fn train_knn(reg: &Registry, run: &RunSetup) -> Result<ExitCode> {
    let a: &TrainArgs = &run.args;
    let eval_k = a.eval_k.clone().unwrap_or_else(|| "1,3,5,9".into());
    let ks: Vec<usize> = parse_list(&eval_k, "--eval-k")?;
    let data_name = a.data.clone().unwrap_or_else(|| "digits".into());
    let (k, queries) = (a.k.unwrap_or(5), a.queries.unwrap_or(100));
    if ks.is_empty() || ks.contains(&0) {
        return Err(DlmError::invalid(
            "--eval-k",
            "give positive values of k, e.g. 1,3,5,9",
        ));
    }
    let data_dir = a.data_dir.clone().unwrap_or_else(data::default_data_dir);
    let split = data::load(&data_name, &data_dir)?;
    let d = split.train.dim();
    let n_train = split.train.len();
    // Evaluation uses every training image as a candidate: check k now, not after training.
    if let Some(&kmax) = ks.iter().max().filter(|&&m| m > n_train) {
        return Err(DlmError::invalid(
            "--eval-k",
            format!(
                "k = {kmax} exceeds the {n_train} training images of {data_name}; give values \
                 of k up to {n_train}"
            ),
        ));
    }
    if split.test.is_empty() {
        return Err(DlmError::invalid(
            "--data",
            format!("{data_name} has no test images to evaluate on"),
        ));
    }
    let checksum = split_checksum(&split);
    let mu_lr = a.mu_lr.unwrap_or(1e-3);
    let est = crate::common::estimator_choice(reg, a.estimator.as_deref(), a.draws)?;
    let sigma_mode = est.sigma(a.sigma, SigmaChoice::Fixed(0.3));
    let draws = a.draws.unwrap_or(1);
    let sigma_lr = a.sigma_lr.unwrap_or(1e-5);
    let default_cand = if data_name == "cifar10" { 600 } else { 800 };
    let candidates = a
        .candidates
        .unwrap_or(default_cand)
        .min(n_train.saturating_sub(queries));
    let specs = KnnSpecs {
        data: data_name.clone(),
        k,
        noise: est.noise(a.noise.as_deref(), k, "gumbel"),
        // Small inputs (digits, 64 pixels): identity-initialised, so training starts from
        // pixel k-NN (dlm_plugin_mlp::init_identity). Large inputs: a 256-64 MLP embedding.
        mu: a.mu.clone().unwrap_or_else(|| {
            if d <= 128 {
                format!(
                    "mlp:sizes={d}-128-{d},init=identity,opt=adam,lr={mu_lr},seed={}",
                    a.seed
                )
            } else {
                format!("mlp:sizes={d}-256-64,opt=adam,lr={mu_lr},seed={}", a.seed)
            }
        }),
        sigma_mode,
        sigma_net: a.sigma_net.clone().unwrap_or_else(|| {
            crate::common::default_sigma_net(a, d, sigma_lr, a.seed.wrapping_add(1))
        }),
    };
    let settings = KnnSettings {
        k,
        queries,
        candidates,
        estimator: DlmEstimator {
            epsilon: a.epsilon.unwrap_or(-0.1),
            draws,
            escape_factor: 1.1,
            max_abs_epsilon: a.max_epsilon.unwrap_or(0.9999),
        },
        seed: a.seed,
    };
    let mut task = build(reg, &specs, settings, split)?;
    let estimator_spec = est.spec.clone();
    if let Some(e) = est.estimator {
        task.model_mut().set_estimator(e)?;
    }
    let mut header = BTreeMap::new();
    let h = &mut header;
    h.insert("task".into(), "knn".into());
    h.insert("estimator".into(), estimator_spec.clone());
    h.insert("data".into(), specs.data.clone());
    h.insert("k".into(), specs.k.to_string());
    h.insert("noise".into(), specs.noise.clone());
    h.insert("mu".into(), specs.mu.clone());
    h.insert("sigma_mode".into(), specs.sigma_mode.to_string());
    h.insert("sigma_net".into(), specs.sigma_net.clone());
    h.insert("queries".into(), queries.to_string());
    h.insert("candidates".into(), candidates.to_string());
    h.insert("draws".into(), draws.to_string());
    h.insert("seed".into(), a.seed.to_string());
    h.insert("eval_k".into(), eval_k.clone());
    let epochs = a.epochs.unwrap_or(15);
    let fit = fit_options(a, epochs, a.patience.unwrap_or(0), 0.0);
    let mut all = common_settings(&header, &task.settings().estimator, &fit);
    all.insert("data_checksum".into(), checksum);
    crate::common::apply_eps_policy(a, task.model_mut(), &mut all)?;
    if let Some(every) = a.eval_every {
        let subset = a.eval_subset.unwrap_or(1000);
        task.set_epoch_eval(Some(dlm_tasks::knn::EpochEval {
            every,
            subset,
            k: ks[0],
        }))?;
        all.insert("eval_every".into(), every.to_string());
        all.insert("eval_subset".into(), subset.to_string());
    } else if a.eval_subset.is_some() {
        return Err(DlmError::invalid(
            "--eval-subset",
            "applies to --eval-every; add it or remove the subset",
        ));
    }
    let state = run.start(task.model_mut(), &all, epochs)?;
    let trained = run.train(&mut task, KnnTask::model, &header, &all, &fit, state)?;
    let report = &trained.report;
    let metrics = task.evaluate(&ks)?;
    let pixels = task.pixel_baseline(&ks)?;
    if !a.quiet {
        eprintln!(
            "trained {} epochs in {:.1} s on {} ({} train / {} test images){}",
            report.epochs_run,
            report.seconds,
            data_name,
            task.data().train.len(),
            task.data().test.len(),
            if report.interrupted {
                ", interrupted"
            } else {
                ""
            }
        );
        print_accuracy("DLM embedding k-NN", &metrics);
        print_accuracy("pixel k-NN", &pixels);
    }
    if let Some(p) = run.plot_path() {
        plot::training_svg(p, &report.history)?;
    }
    if a.json {
        let last = report.history.last().cloned();
        let mut v = json!({
            "task": "knn",
            "data": data_name,
            "k": k,
            "queries": queries,
            "candidates": candidates,
            "draws": draws,
            "estimator": estimator_spec,
            "noise": specs.noise,
            "mu": specs.mu,
            "sigma_mode": sigma_mode.to_string(),
            "seed": a.seed,
            "epochs_run": report.epochs_run,
            "train_seconds": num(report.seconds),
            "seconds_per_epoch": num(report.seconds / report.epochs_run as f64),
            "sigma_final": num(last.as_ref().map_or(f64::NAN, |r| r.sigma)),
            "epsilon_final": num(task.model().epsilon()),
            "train_loss_final": num(last.as_ref().map_or(f64::NAN, |r| r.loss)),
            "test": {
                "n_test": metrics.n_test,
                "accuracy": accuracy_json(&metrics),
                "pixel_knn_accuracy": accuracy_json(&pixels),
            },
        });
        trained.add_json(&mut v);
        print_json(&v);
    }
    Ok(trained.exit_code())
}

/// `dlm eval` of a saved k-NN model on its data set's test split.
pub fn eval_knn(
    reg: &Registry,
    m: &ModelFile,
    p: &Path,
    data_dir: &Path,
    json_out: bool,
) -> Result<ExitCode> {
    let specs = KnnSpecs {
        data: m.get("data", p)?.into(),
        k: m.parse("k", p)?,
        noise: m.get("noise", p)?.into(),
        mu: m.get("mu", p)?.into(),
        sigma_mode: m.get("sigma_mode", p)?.parse()?,
        sigma_net: m.get("sigma_net", p)?.into(),
    };
    let ks: Vec<usize> = parse_list(m.get("eval_k", p)?, "eval_k")?;
    let settings = KnnSettings {
        k: specs.k,
        queries: m.parse("queries", p)?,
        candidates: m.parse("candidates", p)?,
        estimator: DlmEstimator {
            epsilon: m.parse("epsilon", p)?,
            draws: m.parse("draws", p)?,
            ..DlmEstimator::default()
        },
        seed: m.parse("seed", p)?,
    };
    let split = data::load(&specs.data, data_dir)?;
    let mut task = build(reg, &specs, settings, split)?;
    task.model_mut().load_from(m, p)?;
    let metrics = task.evaluate(&ks)?;
    if json_out {
        print_json(&json!({
            "task": "knn",
            "data": specs.data,
            "model": p.display().to_string(),
            "test": {"n_test": metrics.n_test, "accuracy": accuracy_json(&metrics)},
        }));
    } else {
        print_accuracy("DLM embedding k-NN", &metrics);
    }
    Ok(ExitCode::SUCCESS)
}
