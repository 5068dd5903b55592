//! The training loop: epochs, early stopping, observers.
//!
//! A task (sorting, k-NN, ...) implements [`Task`]: one epoch of training and a scalar loss to
//! monitor. [`fit`] runs epochs until `max_epochs` or until the monitored loss has not
//! improved for `patience` epochs, and reports each epoch to an [`Observer`] (progress bars,
//! logs, plots).

use dlm_core::error::{DlmError, Result};
use std::time::Instant;

/// What one epoch did.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochRecord {
    /// Epoch number (0-based).
    pub epoch: u64,
    /// The monitored training loss (lower is better; drives early stopping).
    pub loss: f64,
    /// Mean task loss of the perturbed predictions (the DLM objective) over the epoch.
    pub perturbed_loss: f64,
    /// Mean noise scale `sigma` over the epoch's examples.
    pub sigma: f64,
    /// The `eps` in use at the end of the epoch.
    pub epsilon: f64,
    /// Fraction of draws whose direction was zero.
    pub zero_rate: f64,
}

/// A trainable task.
pub trait Task {
    /// Runs training epoch `epoch` and reports it.
    fn train_epoch(&mut self, epoch: u64) -> Result<EpochRecord>;
}

/// Receives every epoch's record.
pub trait Observer {
    /// Called after each epoch with the record and whether it improved on the best loss.
    fn on_epoch(&mut self, record: &EpochRecord, improved: bool);
}

impl<F: FnMut(&EpochRecord, bool)> Observer for F {
    fn on_epoch(&mut self, record: &EpochRecord, improved: bool) {
        self(record, improved)
    }
}

/// Settings of [`fit`].
#[derive(Debug, Clone, PartialEq)]
pub struct FitOptions {
    /// At most this many epochs.
    pub max_epochs: u64,
    /// Stop after this many epochs without improvement of the monitored loss (0 = never).
    pub patience: u64,
    /// An improvement must lower the best loss by more than this.
    pub min_delta: f64,
    /// Early stopping watches the mean loss of the last `window` epochs (1 = the raw loss).
    /// With a fresh batch every epoch the raw loss is noisy; a window of 10 compares 100
    /// sequences at batch 10.
    pub window: usize,
}

/// The outcome of [`fit`].
#[derive(Debug, Clone, PartialEq)]
pub struct FitReport {
    /// Epochs actually run.
    pub epochs_run: u64,
    /// Best monitored (window-averaged) loss.
    pub best_loss: f64,
    /// The epoch of the best loss.
    pub best_epoch: u64,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Wall-clock seconds of training.
    pub seconds: f64,
    /// Every epoch's record.
    pub history: Vec<EpochRecord>,
}

/// Trains `task` with early stopping.
pub fn fit(
    task: &mut dyn Task,
    options: &FitOptions,
    observer: &mut dyn Observer,
) -> Result<FitReport> {
    if options.max_epochs == 0 {
        return Err(DlmError::invalid("epochs", "must be at least 1"));
    }
    let start = Instant::now();
    let mut best = f64::INFINITY;
    let mut best_epoch = 0;
    let mut history = Vec::with_capacity(options.max_epochs.min(100_000) as usize);
    let mut stopped_early = false;
    let window = options.window.max(1);
    let mut recent = std::collections::VecDeque::with_capacity(window);
    for epoch in 0..options.max_epochs {
        let rec = task.train_epoch(epoch)?;
        if !rec.loss.is_finite() {
            return Err(DlmError::Numerical {
                what: format!("training loss at epoch {epoch}"),
                message: format!("{}; lower the learning rates or |epsilon|", rec.loss),
            });
        }
        if recent.len() == window {
            recent.pop_front();
        }
        recent.push_back(rec.loss);
        let watched = recent.iter().sum::<f64>() / recent.len() as f64;
        let improved = watched < best - options.min_delta;
        if improved {
            best = watched;
            best_epoch = epoch;
        }
        observer.on_epoch(&rec, improved);
        history.push(rec);
        if options.patience > 0 && epoch - best_epoch >= options.patience {
            stopped_early = true;
            break;
        }
    }
    Ok(FitReport {
        epochs_run: history.len() as u64,
        best_loss: best,
        best_epoch,
        stopped_early,
        seconds: start.elapsed().as_secs_f64(),
        history,
    })
}
