//! The training loop: epochs, early stopping, observers, and the state that makes a run
//! resumable.
//!
//! A task (sorting, k-NN, ...) implements [`Task`]: the steps of one epoch and a scalar loss to
//! monitor. [`fit`] runs epochs until `max_epochs` or until the monitored loss has not
//! improved for `patience` epochs, and reports each epoch to an [`Observer`] (progress bars,
//! logs, plots).
//!
//! [`fit_with`] is the same loop on an explicit [`FitState`] (epochs done, early-stopping
//! state, history, and where a partly run epoch stands): it can start from a state read back
//! from a checkpoint, stop between two steps when asked to, and hands the state to a hook
//! after every epoch. Since the tasks draw all their randomness (data order, batches, noise)
//! from counters keyed by the seed, the epoch and the step, a run continued from a saved state
//! and the same model (weights and optimizer states) repeats the uninterrupted run exactly.

use dlm_core::error::{DlmError, Result};
use std::collections::VecDeque;
use std::time::Instant;

/// What one epoch did.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochRecord {
    /// Epoch number (0-based).
    pub epoch: u64,
    /// The task's monitored training loss (lower is better).
    pub loss: f64,
    /// The value early stopping watches (lower is better): the task's scale-free metric where
    /// it has one (sort: the fraction of wrong positions of the noiseless predictions), else
    /// the monitored loss. A loss whose size shrinks with the errors that remain (the sort
    /// task's +-x^2 loss once only small numbers are misplaced) looks like a plateau while the
    /// errors still fall; a fraction of wrong positions does not.
    pub watched: f64,
    /// Mean task loss of the perturbed predictions (the DLM objective) over the epoch.
    pub perturbed_loss: f64,
    /// Mean noise scale `sigma` over the epoch's examples.
    pub sigma: f64,
    /// Smallest noise scale of the epoch's examples.
    pub sigma_min: f64,
    /// Largest noise scale of the epoch's examples.
    pub sigma_max: f64,
    /// Mean `|d loss / d sigma|` per example (see `StepStats::sigma_grad_abs`).
    pub sigma_grad_abs: f64,
    /// The `eps` in use at the end of the epoch.
    pub epsilon: f64,
    /// Fraction of draws whose direction was zero.
    pub zero_rate: f64,
    /// The same among the draws of examples with loss left (0 when there were none).
    pub zero_rate_with_loss: f64,
    /// Test accuracy measured after this epoch (k-NN `--eval-every`), if measured.
    pub test_accuracy: Option<f64>,
}

/// Sums of the step statistics of an epoch so far (weighted by batch size); the epoch's
/// [`EpochRecord`] holds their per-example means.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepTotals {
    /// The task's monitored metric, summed over the examples.
    pub monitored: f64,
    /// The value early stopping watches, summed over the examples.
    pub watched: f64,
    /// The perturbed loss, summed over the examples.
    pub perturbed: f64,
    /// The noise scale, summed over the examples.
    pub sigma: f64,
    /// Smallest noise scale seen (meaningless while `examples` is 0).
    pub sigma_min: f64,
    /// Largest noise scale seen (meaningless while `examples` is 0).
    pub sigma_max: f64,
    /// `|d loss / d sigma|`, summed over the examples.
    pub sigma_grad_abs: f64,
    /// Examples seen.
    pub examples: usize,
    /// Draws whose DLM direction was zero.
    pub zero_directions: usize,
    /// Draws in total.
    pub draws: usize,
    /// Zero directions among the draws of examples with loss left.
    pub zero_with_loss: usize,
    /// Draws of examples with loss left.
    pub draws_with_loss: usize,
}

impl StepTotals {
    /// One step's totals: `monitored` is the task's metric summed over the `b` examples
    /// (early stopping watches it too unless [`watching`](StepTotals::watching) says otherwise).
    pub fn of(s: &crate::model::StepStats, monitored: f64, b: usize) -> Self {
        StepTotals {
            monitored,
            watched: monitored,
            perturbed: s.perturbed_loss * b as f64,
            sigma: s.sigma_mean * b as f64,
            sigma_min: s.sigma_min,
            sigma_max: s.sigma_max,
            sigma_grad_abs: s.sigma_grad_abs * b as f64,
            examples: b,
            zero_directions: s.zero_directions,
            draws: s.total_draws,
            zero_with_loss: s.zero_with_loss.0,
            draws_with_loss: s.zero_with_loss.1,
        }
    }

    /// The same totals, with `watched` (summed over the examples) for early stopping.
    pub fn watching(mut self, watched: f64) -> Self {
        self.watched = watched;
        self
    }

    /// Adds another step's totals.
    pub fn add(&mut self, o: &StepTotals) {
        if o.examples > 0 {
            if self.examples == 0 {
                (self.sigma_min, self.sigma_max) = (o.sigma_min, o.sigma_max);
            } else {
                self.sigma_min = self.sigma_min.min(o.sigma_min);
                self.sigma_max = self.sigma_max.max(o.sigma_max);
            }
        }
        self.monitored += o.monitored;
        self.watched += o.watched;
        self.sigma_grad_abs += o.sigma_grad_abs;
        self.perturbed += o.perturbed;
        self.sigma += o.sigma;
        self.examples += o.examples;
        self.zero_directions += o.zero_directions;
        self.draws += o.draws;
        self.zero_with_loss += o.zero_with_loss;
        self.draws_with_loss += o.draws_with_loss;
    }

    /// The epoch's record: per-example means.
    pub fn record(&self, epoch: u64, epsilon: f64) -> EpochRecord {
        let n = self.examples.max(1) as f64;
        EpochRecord {
            epoch,
            loss: self.monitored / n,
            watched: self.watched / n,
            perturbed_loss: self.perturbed / n,
            sigma: self.sigma / n,
            sigma_min: self.sigma_min,
            sigma_max: self.sigma_max,
            sigma_grad_abs: self.sigma_grad_abs / n,
            epsilon,
            zero_rate: self.zero_directions as f64 / self.draws.max(1) as f64,
            zero_rate_with_loss: self.zero_with_loss as f64 / self.draws_with_loss.max(1) as f64,
            test_accuracy: None,
        }
    }
}

/// Where a partly run epoch stands: the steps done and their totals.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EpochCursor {
    /// The epoch.
    pub epoch: u64,
    /// Steps of it already done (the next step to run).
    pub step: u64,
    /// Totals of those steps.
    pub totals: StepTotals,
}

/// How a call of [`Task::train_steps`] ended.
#[derive(Debug, Clone, PartialEq)]
pub enum EpochProgress {
    /// The epoch is complete.
    Done(EpochRecord),
    /// Asked to stop between two steps; the epoch continues from the cursor.
    Stopped(EpochCursor),
}

/// A trainable task.
pub trait Task {
    /// Runs the steps of epoch `epoch` from `from` (`None`: from its first step). After each
    /// step but the last it calls `stop`; when that says yes, it returns where it stands,
    /// so that a later call with that cursor (and the same model) finishes the epoch exactly
    /// as an uninterrupted call would have.
    fn train_steps(
        &mut self,
        epoch: u64,
        from: Option<EpochCursor>,
        stop: &dyn Fn() -> bool,
    ) -> Result<EpochProgress>;

    /// Runs training epoch `epoch` in full and reports it.
    fn train_epoch(&mut self, epoch: u64) -> Result<EpochRecord> {
        match self.train_steps(epoch, None, &|| false)? {
            EpochProgress::Done(r) => Ok(r),
            EpochProgress::Stopped(c) => Err(DlmError::invalid(
                "training epoch",
                format!("epoch {epoch} stopped at step {} unasked", c.step),
            )),
        }
    }
}

/// The step a task resumes an epoch from, and the totals so far; refuses a cursor of another
/// epoch.
pub fn resume_point(epoch: u64, from: Option<EpochCursor>) -> Result<(usize, StepTotals)> {
    match from {
        None => Ok((0, StepTotals::default())),
        Some(c) if c.epoch == epoch => Ok((
            usize::try_from(c.step)
                .map_err(|_| DlmError::invalid("epoch cursor", "step out of range"))?,
            c.totals,
        )),
        Some(c) => Err(DlmError::invalid(
            "epoch cursor",
            format!("is for epoch {}, not epoch {epoch}", c.epoch),
        )),
    }
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
    /// At most this many epochs (in total, counting those of a resumed state).
    pub max_epochs: u64,
    /// Stop after this many epochs without improvement of the monitored loss (0 = never).
    pub patience: u64,
    /// Patience that grows with the run: stop only after
    /// `max(patience, patience_growth * (best_epoch + 1))` epochs without improvement (0 = the
    /// fixed `patience`). A plateau that lasts longer than the fixed patience and then breaks
    /// (the sort task with the seed's +-x^2 loss at d = 50 stalls for 50-65 epochs at a few
    /// wrong positions per sequence after ~120 epochs of progress) ends the run at a fixed
    /// patience; with a growth of 1 the run waits as long as it took to get there.
    pub patience_growth: f64,
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
    /// Epochs completed (in total, counting those of a resumed state).
    pub epochs_run: u64,
    /// Best watched (window-averaged) value ([`EpochRecord::watched`]).
    pub best_loss: f64,
    /// The epoch of the best loss.
    pub best_epoch: u64,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Whether the run stopped because it was asked to (before `max_epochs` and early
    /// stopping); the state then says where it stands.
    pub interrupted: bool,
    /// Wall-clock seconds of training (in total, counting those of a resumed state).
    pub seconds: f64,
    /// Every epoch's record.
    pub history: Vec<EpochRecord>,
}

/// Everything the training loop carries from epoch to epoch: with the model, what a run
/// needs to continue exactly where it stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct FitState {
    /// Epochs completed (the next epoch to run).
    pub epochs_done: u64,
    /// Best monitored (window-averaged) loss so far (`inf` before the first epoch).
    pub best: f64,
    /// The epoch of the best loss.
    pub best_epoch: u64,
    /// The moving-average window: the monitored losses of the last epochs, oldest first.
    pub recent: VecDeque<f64>,
    /// Whether early stopping has ended the run (no further epoch will run).
    pub stopped_early: bool,
    /// Seconds spent training so far.
    pub seconds: f64,
    /// Every completed epoch's record.
    pub history: Vec<EpochRecord>,
    /// The partly run epoch `epochs_done`, if training stopped between two of its steps.
    pub cursor: Option<EpochCursor>,
}

impl Default for FitState {
    fn default() -> Self {
        FitState {
            epochs_done: 0,
            best: f64::INFINITY,
            best_epoch: 0,
            recent: VecDeque::new(),
            stopped_early: false,
            seconds: 0.0,
            history: Vec::new(),
            cursor: None,
        }
    }
}

const STATE_MAGIC: &[u8; 8] = b"DLMFIT02";
/// Bytes of one epoch record in [`FitState::to_bytes`].
const RECORD_BYTES: usize = 8 + 11 * 8;

impl FitState {
    /// Binary form, little-endian: magic `b"DLMFIT02"`; `u64` epochs done; `f64` best; `u64`
    /// best epoch; `u8` stopped early; `f64` seconds; `u64` window length and its `f64`s;
    /// `u64` history length and per record `u64` epoch and eleven `f64` (loss, watched,
    /// perturbed loss, sigma, sigma min, sigma max, |d loss / d sigma|, eps, zero rate, zero
    /// rate with loss, test accuracy); `u8` cursor present, then `u64` epoch, `u64` step, seven `f64` and five
    /// `u64` totals (monitored, watched, perturbed, sigma, sigma min, sigma max,
    /// |d loss / d sigma|; examples, zero directions, draws, zero directions with loss, draws
    /// with loss).
    /// (`DLMFIT01`, before the watched value and the sigma range, is refused.)
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut o =
            Vec::with_capacity(64 + RECORD_BYTES * self.history.len() + 8 * self.recent.len());
        let u = |o: &mut Vec<u8>, v: u64| o.extend_from_slice(&v.to_le_bytes());
        let f = |o: &mut Vec<u8>, v: f64| o.extend_from_slice(&v.to_bits().to_le_bytes());
        o.extend_from_slice(STATE_MAGIC);
        u(&mut o, self.epochs_done);
        f(&mut o, self.best);
        u(&mut o, self.best_epoch);
        o.push(self.stopped_early as u8);
        f(&mut o, self.seconds);
        u(&mut o, self.recent.len() as u64);
        for &v in &self.recent {
            f(&mut o, v);
        }
        u(&mut o, self.history.len() as u64);
        for r in &self.history {
            u(&mut o, r.epoch);
            for v in [
                r.loss,
                r.watched,
                r.perturbed_loss,
                r.sigma,
                r.sigma_min,
                r.sigma_max,
                r.sigma_grad_abs,
                r.epsilon,
                r.zero_rate,
                r.zero_rate_with_loss,
                r.test_accuracy.unwrap_or(f64::NAN),
            ] {
                f(&mut o, v);
            }
        }
        match &self.cursor {
            None => o.push(0),
            Some(c) => {
                o.push(1);
                u(&mut o, c.epoch);
                u(&mut o, c.step);
                let t = &c.totals;
                for v in [
                    t.monitored,
                    t.watched,
                    t.perturbed,
                    t.sigma,
                    t.sigma_min,
                    t.sigma_max,
                    t.sigma_grad_abs,
                ] {
                    f(&mut o, v);
                }
                for v in [
                    t.examples,
                    t.zero_directions,
                    t.draws,
                    t.zero_with_loss,
                    t.draws_with_loss,
                ] {
                    u(&mut o, v as u64);
                }
            }
        }
        o
    }

    /// Parses [`FitState::to_bytes`], validating every length (before allocating) and the
    /// consistency of the counters; `what` names the source in errors. Never panics.
    pub fn from_bytes(bytes: &[u8], what: &str) -> Result<Self> {
        let bad = |m: String| DlmError::format("training state", what, m);
        let mut r = Reader { bytes, pos: 0 };
        let magic = r.take(8).map_err(&bad)?;
        if magic == b"DLMFIT01" {
            return Err(bad(
                "a training state of an older dlm (DLMFIT01, before early stopping watched a \
                 scale-free metric); start the run again"
                    .into(),
            ));
        }
        if magic != STATE_MAGIC {
            return Err(bad("bad magic (not a dlm training state)".into()));
        }
        let epochs_done = r.u64().map_err(&bad)?;
        let best = r.f64().map_err(&bad)?;
        let best_epoch = r.u64().map_err(&bad)?;
        let stopped_early = match r.u8().map_err(&bad)? {
            0 => false,
            1 => true,
            v => return Err(bad(format!("stopped-early flag {v} (0 or 1)"))),
        };
        let seconds = r.f64().map_err(&bad)?;
        let n = r.count(8).map_err(&bad)?;
        let mut recent = VecDeque::with_capacity(n);
        for _ in 0..n {
            recent.push_back(r.f64().map_err(&bad)?);
        }
        let n = r.count(RECORD_BYTES).map_err(&bad)?;
        let mut history = Vec::with_capacity(n);
        for _ in 0..n {
            history.push(EpochRecord {
                epoch: r.u64().map_err(&bad)?,
                loss: r.f64().map_err(&bad)?,
                watched: r.f64().map_err(&bad)?,
                perturbed_loss: r.f64().map_err(&bad)?,
                sigma: r.f64().map_err(&bad)?,
                sigma_min: r.f64().map_err(&bad)?,
                sigma_max: r.f64().map_err(&bad)?,
                sigma_grad_abs: r.f64().map_err(&bad)?,
                epsilon: r.f64().map_err(&bad)?,
                zero_rate: r.f64().map_err(&bad)?,
                zero_rate_with_loss: r.f64().map_err(&bad)?,
                test_accuracy: Some(r.f64().map_err(&bad)?).filter(|v| !v.is_nan()),
            });
        }
        let cursor = match r.u8().map_err(&bad)? {
            0 => None,
            1 => {
                let epoch = r.u64().map_err(&bad)?;
                let step = r.u64().map_err(&bad)?;
                let mut fl = [0f64; 7];
                for v in &mut fl {
                    *v = r.f64().map_err(&bad)?;
                }
                let [monitored, watched, perturbed, sigma, sigma_min, sigma_max, sigma_grad_abs] =
                    fl;
                let mut ints = [0usize; 5];
                for v in &mut ints {
                    *v = usize::try_from(r.u64().map_err(&bad)?)
                        .map_err(|_| bad("cursor count out of range".into()))?;
                }
                Some(EpochCursor {
                    epoch,
                    step,
                    totals: StepTotals {
                        monitored,
                        watched,
                        perturbed,
                        sigma,
                        sigma_min,
                        sigma_max,
                        sigma_grad_abs,
                        examples: ints[0],
                        zero_directions: ints[1],
                        draws: ints[2],
                        zero_with_loss: ints[3],
                        draws_with_loss: ints[4],
                    },
                })
            }
            v => return Err(bad(format!("cursor flag {v} (0 or 1)"))),
        };
        if r.pos != bytes.len() {
            return Err(bad("trailing bytes".into()));
        }
        let s = FitState {
            epochs_done,
            best,
            best_epoch,
            recent,
            stopped_early,
            seconds,
            history,
            cursor,
        };
        s.check().map_err(bad)?;
        Ok(s)
    }

    /// The invariants the loop keeps: one record per completed epoch, numbered in order; the
    /// best epoch among them; a cursor only for the next epoch.
    fn check(&self) -> std::result::Result<(), String> {
        if self.history.len() as u64 != self.epochs_done {
            return Err(format!(
                "{} epoch records for {} epochs done",
                self.history.len(),
                self.epochs_done
            ));
        }
        if let Some(i) = (0..self.history.len()).find(|&i| self.history[i].epoch != i as u64) {
            return Err(format!(
                "record {i} is numbered epoch {}",
                self.history[i].epoch
            ));
        }
        if self.epochs_done > 0 && self.best_epoch >= self.epochs_done {
            return Err(format!(
                "best epoch {} of {} epochs done",
                self.best_epoch, self.epochs_done
            ));
        }
        if self.recent.len() as u64 > self.epochs_done {
            return Err(format!(
                "{} window entries after {} epochs",
                self.recent.len(),
                self.epochs_done
            ));
        }
        if let Some(c) = &self.cursor {
            if c.step == 0 {
                return Err("a cursor at step 0 (no step done)".into());
            }
            if c.epoch != self.epochs_done || self.stopped_early {
                return Err(format!(
                    "a cursor in epoch {} after {} epochs done{}",
                    c.epoch,
                    self.epochs_done,
                    if self.stopped_early {
                        " and an early stop"
                    } else {
                        ""
                    }
                ));
            }
        }
        if !(self.seconds.is_finite() && self.seconds >= 0.0) {
            return Err(format!("training seconds {}", self.seconds));
        }
        Ok(())
    }
}

/// A bounded little-endian reader: every length is checked against the bytes left.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("truncated at byte {}", self.pos))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn f64(&mut self) -> std::result::Result<f64, String> {
        Ok(f64::from_bits(self.u64()?))
    }
    /// A count of items of `size` bytes each, refused when the bytes left cannot hold them.
    fn count(&mut self, size: usize) -> std::result::Result<usize, String> {
        let n = self.u64()?;
        let left = (self.bytes.len() - self.pos) / size;
        if n > left as u64 {
            return Err(format!(
                "{n} entries announced at byte {}, room for {left}",
                self.pos - 8
            ));
        }
        Ok(n as usize)
    }
}

/// What [`fit_with`] asks of its caller besides the task.
pub trait FitHooks<T: ?Sized> {
    /// Called after each epoch with the record and whether it improved on the best loss.
    fn on_epoch(&mut self, record: &EpochRecord, improved: bool);
    /// Whether to stop now (checked between steps and between epochs; e.g. a signal).
    fn stop(&self) -> bool {
        false
    }
    /// Called after each completed epoch with the task and the state (e.g. to write a
    /// checkpoint); an error ends training.
    fn after_epoch(&mut self, _task: &T, _state: &FitState) -> Result<()> {
        Ok(())
    }
}

/// The epochs without improvement after which early stopping ends the run, given the state's
/// best epoch: `max(patience, ceil(patience_growth * (best_epoch + 1)))`.
pub fn patience_now(options: &FitOptions, state: &FitState) -> u64 {
    let grown = (options.patience_growth.max(0.0) * (state.best_epoch + 1) as f64).ceil();
    options.patience.max(if grown.is_finite() {
        grown as u64
    } else {
        u64::MAX
    })
}

/// Trains `task` with early stopping.
pub fn fit(
    task: &mut dyn Task,
    options: &FitOptions,
    observer: &mut dyn Observer,
) -> Result<FitReport> {
    struct Plain<'a>(&'a mut dyn Observer);
    impl<T: ?Sized> FitHooks<T> for Plain<'_> {
        fn on_epoch(&mut self, record: &EpochRecord, improved: bool) {
            self.0.on_epoch(record, improved)
        }
    }
    fit_with(
        task,
        options,
        &mut FitState::default(),
        &mut Plain(observer),
    )
}

/// Trains `task` from `state` (a fresh [`FitState::default`] or one read back from a
/// checkpoint) to `options.max_epochs` epochs in total, with early stopping, until
/// `hooks.stop()`; `state` ends where training stopped.
///
/// A state that early stopping ended trains no further. The report covers the whole run,
/// resumed epochs included.
pub fn fit_with<T: Task + ?Sized>(
    task: &mut T,
    options: &FitOptions,
    state: &mut FitState,
    hooks: &mut dyn FitHooks<T>,
) -> Result<FitReport> {
    if options.max_epochs == 0 {
        return Err(DlmError::invalid("epochs", "must be at least 1"));
    }
    state
        .check()
        .map_err(|m| DlmError::invalid("training state", m))?;
    if state.epochs_done > options.max_epochs
        || (state.epochs_done == options.max_epochs && state.cursor.is_some())
    {
        return Err(DlmError::invalid(
            "epochs",
            format!(
                "{} is fewer than the {} epochs already trained; --epochs is the total",
                options.max_epochs,
                state.epochs_done + state.cursor.is_some() as u64
            ),
        ));
    }
    let start = Instant::now();
    let seconds_before = state.seconds;
    let window = options.window.max(1);
    let mut interrupted = false;
    while !state.stopped_early && state.epochs_done < options.max_epochs {
        if state.cursor.is_none() && hooks.stop() {
            interrupted = true;
            break;
        }
        let epoch = state.epochs_done;
        let progress = {
            let h: &dyn FitHooks<T> = hooks;
            task.train_steps(epoch, state.cursor.take(), &|| h.stop())?
        };
        let rec = match progress {
            EpochProgress::Done(rec) => rec,
            EpochProgress::Stopped(c) => {
                state.cursor = Some(c);
                interrupted = true;
                break;
            }
        };
        if !(rec.loss.is_finite() && rec.watched.is_finite()) {
            return Err(DlmError::Numerical {
                what: format!("training loss at epoch {epoch}"),
                message: format!("{}; lower the learning rates or |epsilon|", rec.loss),
            });
        }
        while state.recent.len() >= window {
            state.recent.pop_front();
        }
        state.recent.push_back(rec.watched);
        let watched = state.recent.iter().sum::<f64>() / state.recent.len() as f64;
        let improved = watched < state.best - options.min_delta;
        if improved {
            state.best = watched;
            state.best_epoch = epoch;
        }
        hooks.on_epoch(&rec, improved);
        state.history.push(rec);
        state.epochs_done = epoch + 1;
        if options.patience > 0 && epoch - state.best_epoch >= patience_now(options, state) {
            state.stopped_early = true;
        }
        state.seconds = seconds_before + start.elapsed().as_secs_f64();
        hooks.after_epoch(task, state)?;
    }
    state.seconds = seconds_before + start.elapsed().as_secs_f64();
    Ok(FitReport {
        epochs_run: state.epochs_done,
        best_loss: state.best,
        best_epoch: state.best_epoch,
        stopped_early: state.stopped_early,
        interrupted,
        seconds: state.seconds,
        history: state.history.clone(),
    })
}
