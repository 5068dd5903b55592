//! The options of `dlm train` and `dlm eval` (shared by the task modules), and the check that
//! refuses an option the chosen task (or the loaded model) does not use.
//!
//! Task-specific options are `Option`s without a clap default, so that "given" can be told
//! apart from "defaulted": an option given to a task that does not use it is an error, never
//! silently ignored. Their defaults are applied by the task modules (and named in `--help`).

use clap::{Args, ValueEnum};
use dlm_core::{DlmError, Result};
use dlm_tasks::SigmaChoice;
use std::path::PathBuf;

/// Which experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TaskKind {
    /// Learning to sort: d numbers, a d x d matching (seed experiment 1).
    Sort,
    /// k-NN image classification with a learned embedding (seed experiment 2).
    Knn,
    /// Any structure on a supervised .npz data file (features x, true structures).
    Structured,
    /// Decision-focused shortest paths on a grid (PyEPO's benchmark): predict arc costs from
    /// features, measured by normalized regret.
    ShortestPath,
}

impl TaskKind {
    /// The name on the command line.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TaskKind::Sort => "sort",
            TaskKind::Knn => "knn",
            TaskKind::Structured => "structured",
            TaskKind::ShortestPath => "shortest-path",
        }
    }

    /// Whether `--data` names a file (whose path a checkpoint stores absolute).
    pub(crate) fn reads_files(self) -> bool {
        matches!(self, TaskKind::Structured | TaskKind::ShortestPath)
    }
}

/// Options of `dlm train`.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// The experiment.
    #[arg(long, value_enum, default_value_t = TaskKind::Sort)]
    pub(crate) task: TaskKind,
    /// Sequence length d (sort) [default: 10].
    #[arg(long)]
    pub(crate) n: Option<usize>,
    /// Examples per batch (sort: sequences, default 10; structured: examples of the training
    /// split, default 32).
    #[arg(long)]
    pub(crate) batch: Option<usize>,
    /// Training sequences (sort): 0 draws a fresh batch every epoch (one step per epoch, the
    /// default); N fixes a training set of N sequences, one pass per epoch. Shortest-path:
    /// generated training instances [default: 1000].
    #[arg(long)]
    pub(crate) train_size: Option<usize>,
    /// Noise draws per example [default: sort 5, knn 1 (the seed: one draw is usually best
    /// for k > 1), structured 1].
    #[arg(long)]
    pub(crate) draws: Option<usize>,
    /// Initial eps of the loss-augmented argmax (negative: towards the ground truth)
    /// [default: sort -12, knn -0.1, structured -1].
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) epsilon: Option<f64>,
    /// Largest |eps| the zero-direction escape (|eps| *= 1.1) may reach [default: sort 1000,
    /// knn 0.9999 (the seed's cap), structured 1000].
    #[arg(long)]
    pub(crate) max_epsilon: Option<f64>,
    /// Maximum epochs, in total (with --resume: counting the checkpoint's) [default: sort 2000,
    /// knn 15, structured 50].
    #[arg(long)]
    pub(crate) epochs: Option<u64>,
    /// Stop after this many epochs without improvement of the training loss (0: never)
    /// [default: sort 50, knn 0, structured 0].
    #[arg(long)]
    pub(crate) patience: Option<u64>,
    /// Patience that grows with the run: early stopping waits
    /// max(--patience, F x (best epoch + 1)) epochs without improvement [default: sort 1 (a
    /// run waits as long as it took to reach its best; the seed's +-x^2 loss stalls for 50-65
    /// epochs before it sorts everything), knn and structured 0 (the fixed patience)].
    #[arg(long)]
    pub(crate) patience_growth: Option<f64>,
    /// Early stopping watches the mean of this many recent epochs of the task's metric (sort:
    /// the fraction of wrong positions of the noiseless predictions on the training batches;
    /// knn and structured: the training loss).
    #[arg(long, default_value_t = 10)]
    pub(crate) smooth: usize,
    /// Learning rate of the default mu (Adam) [default: sort 0.1, knn 1e-3, structured 0.01].
    #[arg(long)]
    pub(crate) mu_lr: Option<f64>,
    /// Learning rate of the default sigma network (SGD) [default: sort 1e-6, knn 1e-5,
    /// structured 1e-5].
    #[arg(long)]
    pub(crate) sigma_lr: Option<f64>,
    /// Noise model (any registered one, with options), e.g. gumbel, gumbel:variance=3,
    /// gaussian:std=2 [default: sort gumbel:variance=3 (the official code), knn and
    /// structured gumbel].
    #[arg(long)]
    pub(crate) noise: Option<String>,
    /// Gradient estimator, any registered one with options: dlm (the default; its eps and
    /// draws come from --epsilon, --draws, --max-epsilon), fy[:draws=N] (perturbed
    /// Fenchel-Young), blackbox[:lambda=L] (Vlastelica et al.), imle[:lambda=L,draws=N]
    /// (Niepert et al.; default noise sum-of-gamma), spo+ (Elmachtoub & Grigas; needs true
    /// costs, i.e. the shortest-path task). --draws is passed to estimators that take draws.
    /// Estimators without noise default to --sigma none, I-MLE to fixed:1.
    #[arg(long)]
    pub(crate) estimator: Option<String>,
    /// Noise scale: learned (a network), fixed:VALUE, or none (no noise)
    /// [default: sort and structured learned, knn fixed:0.3 (see docs/results.md)].
    #[arg(long)]
    pub(crate) sigma: Option<SigmaChoice>,
    /// Structure, any registered one with options (sort: a matching, default `matching`;
    /// structured: required, e.g. grid-path from the example plugin; knn always uses
    /// topk:k=K).
    #[arg(long)]
    pub(crate) structure: Option<String>,
    /// Task loss (sort default: hamming; the official +-x^2 loss, `sort`, also sorts d = 50
    /// and 100 without error but needs longer runs, see docs/results.md; structured:
    /// required; knn always uses label-mismatch).
    #[arg(long)]
    pub(crate) loss: Option<String>,
    /// The mu scorer [default: sort mlp:sizes=1-32-N; structured mlp:sizes=F-M, a linear
    /// model from the F features to the M potentials; Adam at --mu-lr].
    #[arg(long)]
    pub(crate) mu: Option<String>,
    /// The sigma scorer [default: mlp:sizes=IN-1,out=softplus with SGD at --sigma-lr].
    #[arg(long = "sigma-net")]
    pub(crate) sigma_net: Option<String>,
    /// Start a learned sigma at V for every input: the default sigma network's last layer gets
    /// zero weights and the bias softplus^-1(V) (mlp options out_init_scale=0,
    /// bias_init=...). Without it the default network starts wherever its random weights put
    /// it (about 0.8 on digits).
    #[arg(long)]
    pub(crate) sigma_init: Option<f64>,
    /// DLM's eps policy: seed (grow |eps| by 10 % while every direction of a batch is zero, up
    /// to --max-epsilon, never shrink) or adaptive (|eps| relative to the spread of the scores,
    /// grown and shrunk between batches to hold the zero-direction rate in --eps-band; see
    /// dlm_core::adaptive for what that does to the bias) [default: seed].
    #[arg(long, value_parser = ["seed", "adaptive"])]
    pub(crate) eps_policy: Option<String>,
    /// Target band LO,HI of the zero-direction rate for --eps-policy adaptive [default:
    /// 0.5,0.8].
    #[arg(long)]
    pub(crate) eps_band: Option<String>,
    /// Stop training once this many seconds of training have passed in this invocation (after
    /// the current step), then evaluate and save as usual; the JSON says
    /// `stopped_by: "time_budget"`. Not stored in checkpoints.
    #[arg(long)]
    pub(crate) time_budget: Option<f64>,
    /// k-NN: measure test accuracy (k = the first of --eval-k) on the first --eval-subset
    /// test images after every N-th epoch, into the JSON (`test_accuracy_trace`) and the plot.
    #[arg(long)]
    pub(crate) eval_every: Option<u64>,
    /// Test images of --eval-every [default: 1000, or all when fewer].
    #[arg(long)]
    pub(crate) eval_subset: Option<usize>,
    /// Optimizer of the default sigma network: sgd (the seed's) or adam [default: sgd].
    #[arg(long, value_parser = ["sgd", "adam"])]
    pub(crate) sigma_opt: Option<String>,
    /// Test sequences (sort), generated test instances (shortest-path) [default: 1000].
    #[arg(long)]
    pub(crate) test_size: Option<usize>,
    /// Polynomial degree of PyEPO's cost generator (shortest-path) [default: 1].
    #[arg(long)]
    pub(crate) deg: Option<u32>,
    /// Half-width e of the generator's multiplicative noise U[1-e, 1+e] (shortest-path)
    /// [default: 0.5].
    #[arg(long)]
    pub(crate) noise_width: Option<f64>,
    /// Features p of the generated instances (shortest-path) [default: 5].
    #[arg(long)]
    pub(crate) features: Option<usize>,
    /// Grid ROWS,COLS of nodes (shortest-path) [default: 5,5; a file's square grid is inferred].
    #[arg(long)]
    pub(crate) grid: Option<String>,
    /// Range LO,HI of the uniform test numbers (sort) [default: 0,1].
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) test_range: Option<String>,
    /// Data: knn, a data set name (digits (embedded, the default), mnist, fashion-mnist,
    /// cifar10); structured, a .npz file (required; arrays described in docs/cli.md);
    /// shortest-path, a .npz of features x and costs c (e.g. PyEPO's own data; default:
    /// generated with --deg, --noise-width, --features, --train-size, --test-size).
    #[arg(long)]
    pub(crate) data: Option<String>,
    /// Where fetched data sets live (knn; scripts/fetch-data.sh) [default: $DLM_DATA_DIR or
    /// .data].
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Fraction of the examples held out for testing (structured and shortest-path, when the
    /// file has no x_test) [default: 0.2].
    #[arg(long)]
    pub(crate) test_fraction: Option<f64>,
    /// Neighbours chosen during training (knn) [default: 5].
    #[arg(long)]
    pub(crate) k: Option<usize>,
    /// Queries per step (knn) [default: 100].
    #[arg(long)]
    pub(crate) queries: Option<usize>,
    /// Candidates per step (knn) [default: 800, 600 for cifar10, at most what the data allows].
    #[arg(long)]
    pub(crate) candidates: Option<usize>,
    /// Values of k for the k-NN test accuracy (knn) [default: 1,3,5,9].
    #[arg(long)]
    pub(crate) eval_k: Option<String>,
    /// Seed of every random draw (data, split, initialisation, noise).
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Write the trained model here (atomically; also when interrupted, then partly trained).
    #[arg(long, value_name = "PATH")]
    pub(crate) save: Option<PathBuf>,
    /// Write an SVG plot of training loss, sigma and eps per epoch.
    #[arg(long, value_name = "PATH")]
    pub(crate) plot: Option<PathBuf>,
    /// Write a checkpoint here (atomically): every --checkpoint-every epochs, at the end, and
    /// when interrupted (SIGINT/SIGTERM). `dlm train --resume PATH` continues it exactly.
    #[arg(long, value_name = "PATH")]
    pub(crate) checkpoint: Option<PathBuf>,
    /// Write the checkpoint every N epochs [default: at the end of the first epoch that ends
    /// 60 s or more after the last write].
    #[arg(long, value_name = "N")]
    pub(crate) checkpoint_every: Option<u64>,
    /// Continue the run of this checkpoint: every setting comes from it; --epochs (the total),
    /// --save, --plot, --json, --checkpoint and --checkpoint-every may be given anew (the
    /// checkpoint is updated in place unless --checkpoint names another file). Any other option
    /// must not change a setting of the run.
    #[arg(long, value_name = "PATH")]
    pub(crate) resume: Option<PathBuf>,
    /// Print one JSON object with the results on stdout.
    #[arg(long)]
    pub(crate) json: bool,
    /// No progress output.
    #[arg(long, short)]
    pub(crate) quiet: bool,
    /// Print where each epoch's time goes (noise draws, solves, networks, estimator, idle
    /// workers, remainder) and the solver floor: a table on stderr, or `profile` in the JSON
    /// with --json. Timers per phase; results are unchanged.
    #[arg(long)]
    pub(crate) profile: bool,
    /// The options given on the command line, as (`--flag`, raw value; `None` when the value
    /// is not UTF-8), in the order of their definition (filled by `main` from clap's matches).
    #[arg(skip)]
    pub(crate) given: Vec<(String, Option<String>)>,
}

/// The options of `matches` (a subcommand's, defined by `cmd`) that were given on the command
/// line: `--flag` and the raw value (`""` for a flag without value, `None` if not UTF-8).
pub(crate) fn given_options(
    cmd: &clap::Command,
    matches: &clap::ArgMatches,
) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for arg in cmd.get_arguments() {
        let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else {
            continue;
        };
        if matches.value_source(id) != Some(clap::parser::ValueSource::CommandLine) {
            continue;
        }
        let value = if arg.get_action().takes_values() {
            matches
                .get_raw(id)
                .and_then(|mut v| v.next_back())
                .and_then(|v| v.to_str())
                .map(str::to_string)
        } else {
            Some(String::new())
        };
        out.push((format!("--{long}"), value));
    }
    out
}

/// Refuses the first option in `given` (flag, whether it was given, the tasks that use it,
/// an optional hint) that `task` does not use.
fn refuse_unused(task: &str, given: &[(&str, bool, &[&str], &str)], what: &str) -> Result<()> {
    for &(flag, is_given, users, hint) in given {
        if is_given && !users.contains(&task) {
            let users: Vec<String> = users.iter().map(|u| format!("{what} {u}")).collect();
            return Err(DlmError::Unsupported {
                component: format!("{what} {task}"),
                what: flag.to_string(),
                hint: if hint.is_empty() {
                    format!("{flag} applies to {} only; remove it", users.join(" and "))
                } else {
                    hint.to_string()
                },
            });
        }
    }
    Ok(())
}

impl TrainArgs {
    /// Refuses options that the chosen task does not use (an option is never silently
    /// ignored), and checks the learning rates.
    pub(crate) fn check(&self) -> Result<()> {
        for (name, v) in [
            ("--mu-lr", self.mu_lr),
            ("--sigma-lr", self.sigma_lr),
            ("--patience-growth", self.patience_growth),
            ("--time-budget", self.time_budget),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(DlmError::invalid(
                        name,
                        format!("{v}: must be finite and >= 0"),
                    ));
                }
            }
        }
        if let Some(v) = self.sigma_init {
            if !(v.is_finite() && v > 0.0) {
                return Err(DlmError::invalid(
                    "--sigma-init",
                    format!("{v}: must be finite and > 0 (a noise scale)"),
                ));
            }
        }
        for (name, given) in [
            ("--sigma-init", self.sigma_init.is_some()),
            ("--sigma-opt", self.sigma_opt.is_some()),
        ] {
            if given && self.sigma_net.is_some() {
                return Err(DlmError::invalid(
                    name,
                    "sets up the default sigma network; with --sigma-net write it into the \
                     spec (mlp options bias_init=, out_init_scale=, opt=)",
                ));
            }
            if given && matches!(self.sigma, Some(SigmaChoice::Fixed(_) | SigmaChoice::None)) {
                return Err(DlmError::invalid(
                    name,
                    "applies to a learned sigma (--sigma learned); remove it",
                ));
            }
        }
        const SORT: &[&str] = &["sort"];
        const KNN: &[&str] = &["knn"];
        const SORT_STRUCTURED: &[&str] = &["sort", "structured"];
        const SORT_PATH: &[&str] = &["sort", "shortest-path"];
        const PATH: &[&str] = &["shortest-path"];
        const FILES: &[&str] = &["knn", "structured", "shortest-path"];
        const BATCHED: &[&str] = &["sort", "structured", "shortest-path"];
        const HELD_OUT: &[&str] = &["structured", "shortest-path"];
        let knn_fixed = "the k-NN task always uses the structure topk:k=K (choose K with --k) \
                         and the label-mismatch loss; remove it";
        let path_fixed = "the shortest-path task always uses the structure grid-edges (choose \
                          the grid with --grid) and the regret loss; remove it";
        let fixed = if self.task == TaskKind::ShortestPath {
            path_fixed
        } else {
            knn_fixed
        };
        refuse_unused(
            self.task.as_str(),
            &[
                (
                    "--structure",
                    self.structure.is_some(),
                    SORT_STRUCTURED,
                    fixed,
                ),
                ("--loss", self.loss.is_some(), SORT_STRUCTURED, fixed),
                ("--n", self.n.is_some(), SORT, ""),
                ("--eval-every", self.eval_every.is_some(), KNN, ""),
                ("--eval-subset", self.eval_subset.is_some(), KNN, ""),
                ("--train-size", self.train_size.is_some(), SORT_PATH, ""),
                ("--test-size", self.test_size.is_some(), SORT_PATH, ""),
                ("--test-range", self.test_range.is_some(), SORT, ""),
                ("--batch", self.batch.is_some(), BATCHED, ""),
                ("--deg", self.deg.is_some(), PATH, ""),
                ("--noise-width", self.noise_width.is_some(), PATH, ""),
                ("--features", self.features.is_some(), PATH, ""),
                ("--grid", self.grid.is_some(), PATH, ""),
                (
                    "--data",
                    self.data.is_some(),
                    FILES,
                    "the sort task draws its own sequences (--n, --train-size, --test-range); \
                     remove it",
                ),
                ("--data-dir", self.data_dir.is_some(), KNN, ""),
                (
                    "--test-fraction",
                    self.test_fraction.is_some(),
                    HELD_OUT,
                    "",
                ),
                ("--k", self.k.is_some(), KNN, ""),
                ("--queries", self.queries.is_some(), KNN, ""),
                ("--candidates", self.candidates.is_some(), KNN, ""),
                ("--eval-k", self.eval_k.is_some(), KNN, ""),
            ],
            "--task",
        )?;
        if self.checkpoint_every == Some(0) {
            return Err(DlmError::invalid(
                "--checkpoint-every",
                "must be at least 1 (epochs between checkpoints)",
            ));
        }
        if self.checkpoint_every.is_some() && self.checkpoint.is_none() && self.resume.is_none() {
            return Err(DlmError::invalid(
                "--checkpoint-every",
                "needs --checkpoint PATH (where to write them)",
            ));
        }
        Ok(())
    }
}

/// Options of `dlm eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A model written by `dlm train --save` (or a checkpoint of `--checkpoint`).
    #[arg(long, value_name = "PATH")]
    pub(crate) load: PathBuf,
    /// Test sequences (sort models) [default: 1000].
    #[arg(long)]
    pub(crate) test_size: Option<usize>,
    /// Range LO,HI of the uniform test numbers (sort models) [default: 0,1].
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) test_range: Option<String>,
    /// Seed of the test set (sort models) [default: the model's training seed].
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Where fetched data sets live (k-NN models) [default: $DLM_DATA_DIR or .data].
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// The .npz data file (structured models) [default: the file the model was trained on,
    /// as stored in the model]. Evaluates on its test split.
    #[arg(long, value_name = "FILE")]
    pub(crate) data: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

impl EvalArgs {
    /// Refuses options that a model of task `task` does not use.
    pub(crate) fn check_for(&self, task: &str) -> Result<()> {
        const SORT: &[&str] = &["sort"];
        refuse_unused(
            task,
            &[
                ("--test-size", self.test_size.is_some(), SORT, ""),
                ("--test-range", self.test_range.is_some(), SORT, ""),
                (
                    "--seed",
                    self.seed.is_some(),
                    SORT,
                    "its test set is fixed by the data (and, for a held-out fraction, by the \
                     training seed stored in the model); remove it",
                ),
                ("--data-dir", self.data_dir.is_some(), &["knn"], ""),
                (
                    "--data",
                    self.data.is_some(),
                    &["structured", "shortest-path"],
                    "--data applies to structured and shortest-path models only (a k-NN model evaluates on the \
                     data set it was trained on, found in --data-dir); remove it",
                ),
            ],
            "a model of task",
        )
    }
}
