//! # dlm-tasks
//!
//! The experiments built on [`dlm_core`]: everything that is about data and training runs
//! rather than the engine itself.
//!
//! * [`model`]: the [`PerturbedModel`] (structure, noise, loss, `mu`, `sigma`, estimator state)
//!   and its one shared training step, [`PerturbedModel::train_step`];
//! * the tasks: [`sort`] (seed experiment 1), [`knn`] (seed experiment 2) and [`structured`]
//!   (any structure on a supervised data file);
//! * the [`trainer`]: epochs, early stopping, observers;
//! * the [`data`] loaders: image data sets (embedded digits, MNIST, Fashion-MNIST, CIFAR-10);
//! * [`model_file`]s: the validated, atomically written model container;
//! * [`checkpoint`]s (resumable training) and clean [`interrupt`]s.
//! * [`io`]: arrays from CSV and `.npy` files, validated before anything is allocated.

pub mod checkpoint;
pub mod data;
pub mod interrupt;
pub mod io;
pub mod knn;
pub mod model;
pub mod model_file;
pub mod shortest_path;
pub mod sort;
pub mod structured;
pub mod trainer;

pub use model::{
    IdentityMap, NoiseScale, PerturbedModel, PotentialMap, SigmaChoice, StepInput, StepStats,
};
