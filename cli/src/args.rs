//! The options of `dlm train` and `dlm eval` (shared by the task modules).

use clap::{Args, ValueEnum};
use dlm_tasks::SigmaChoice;
use std::path::PathBuf;

/// Which experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TaskKind {
    /// Learning to sort: d numbers, a d x d matching (seed experiment 1).
    Sort,
    /// k-NN image classification with a learned embedding (seed experiment 2).
    Knn,
}

/// Options of `dlm train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The experiment.
    #[arg(long, value_enum, default_value_t = TaskKind::Sort)]
    pub(crate) task: TaskKind,
    /// Sequence length d (sort).
    #[arg(long, default_value_t = 10)]
    pub(crate) n: usize,
    /// Sequences per batch.
    #[arg(long, default_value_t = 10)]
    pub(crate) batch: usize,
    /// Training sequences: 0 draws a fresh batch every epoch (one step per epoch, the
    /// default); N fixes a training set of N sequences, one pass per epoch.
    #[arg(long, default_value_t = 0)]
    pub(crate) train_size: usize,
    /// Noise draws per example [default: sort 5, knn 1 (the seed: one draw is usually best
    /// for k > 1)].
    #[arg(long)]
    pub(crate) draws: Option<usize>,
    /// Initial eps of the loss-augmented argmax (negative: towards the ground truth)
    /// [default: sort -12, knn -0.1].
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) epsilon: Option<f64>,
    /// Largest |eps| the zero-direction escape (|eps| *= 1.1) may reach [default: sort 1000,
    /// knn 0.9999 (the seed's cap)].
    #[arg(long)]
    pub(crate) max_epsilon: Option<f64>,
    /// Maximum epochs [default: sort 2000, knn 15].
    #[arg(long)]
    pub(crate) epochs: Option<u64>,
    /// Stop after this many epochs without improvement of the training loss (0: never)
    /// [default: sort 50, knn 0].
    #[arg(long)]
    pub(crate) patience: Option<u64>,
    /// Early stopping watches the mean training loss of this many recent epochs.
    #[arg(long, default_value_t = 10)]
    pub(crate) smooth: usize,
    /// Learning rate of mu (Adam) [default: sort 0.1, knn 1e-3].
    #[arg(long)]
    pub(crate) mu_lr: Option<f64>,
    /// Learning rate of sigma (SGD) [default: sort 1e-6, knn 1e-5].
    #[arg(long)]
    pub(crate) sigma_lr: Option<f64>,
    /// Noise model (any registered one, with options), e.g. gumbel, gumbel:variance=3,
    /// gaussian:std=2 [default: sort gumbel:variance=3 (the official code), knn gumbel].
    #[arg(long)]
    pub(crate) noise: Option<String>,
    /// Noise scale: learned (a network), fixed:VALUE, or none (no noise)
    /// [default: sort learned, knn fixed:0.3 (see docs/results.md)].
    #[arg(long)]
    pub(crate) sigma: Option<SigmaChoice>,
    /// Structure (default for sort: matching).
    #[arg(long)]
    pub(crate) structure: Option<String>,
    /// Task loss (default for sort: hamming, which sorts d = 50 and 100 without error where the
    /// official +-x^2 loss, `sort`, leaves small numbers misplaced; see docs/results.md).
    #[arg(long)]
    pub(crate) loss: Option<String>,
    /// The mu scorer (default for sort: mlp:sizes=1-32-N with Adam at --mu-lr).
    #[arg(long)]
    pub(crate) mu: Option<String>,
    /// The sigma scorer (default for sort: mlp:sizes=N-1,out=softplus with SGD at --sigma-lr).
    #[arg(long = "sigma-net")]
    pub(crate) sigma_net: Option<String>,
    /// Test sequences (sort).
    #[arg(long, default_value_t = 1000)]
    pub(crate) test_size: usize,
    /// Range LO,HI of the uniform test numbers (sort).
    #[arg(long, default_value = "0,1", allow_hyphen_values = true)]
    pub(crate) test_range: String,
    /// Data set (knn): digits (embedded), mnist, fashion-mnist, cifar10.
    #[arg(long, default_value = "digits")]
    pub(crate) data: String,
    /// Where fetched data sets live (scripts/fetch-data.sh) [default: $DLM_DATA_DIR or .data].
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Neighbours chosen during training (knn).
    #[arg(long, default_value_t = 5)]
    pub(crate) k: usize,
    /// Queries per step (knn).
    #[arg(long, default_value_t = 100)]
    pub(crate) queries: usize,
    /// Candidates per step (knn) [default: 800, 600 for cifar10, at most what the data allows].
    #[arg(long)]
    pub(crate) candidates: Option<usize>,
    /// Values of k for the k-NN test accuracy (knn).
    #[arg(long, default_value = "1,3,5,9")]
    pub(crate) eval_k: String,
    /// Seed of every random draw (data, initialisation, noise).
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Write the trained model here (atomically).
    #[arg(long, value_name = "PATH")]
    pub(crate) save: Option<PathBuf>,
    /// Write an SVG plot of training loss, sigma and eps per epoch.
    #[arg(long, value_name = "PATH")]
    pub(crate) plot: Option<PathBuf>,
    /// Print one JSON object with the results on stdout.
    #[arg(long)]
    pub(crate) json: bool,
    /// No progress output.
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

/// Options of `dlm eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A model written by `dlm train --save`.
    #[arg(long, value_name = "PATH")]
    pub(crate) load: PathBuf,
    /// Test sequences (sort models; k-NN models use the data set's test split).
    #[arg(long, default_value_t = 1000)]
    pub(crate) test_size: usize,
    /// Range LO,HI of the uniform test numbers (sort models).
    #[arg(long, default_value = "0,1", allow_hyphen_values = true)]
    pub(crate) test_range: String,
    /// Seed of the test set (sort models; default: the model's training seed).
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Where fetched data sets live (k-NN models) [default: $DLM_DATA_DIR or .data].
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}
