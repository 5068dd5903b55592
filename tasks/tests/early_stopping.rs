//! Early stopping watches the task's scale-free metric (`EpochRecord::watched`), not its loss,
//! and its patience can grow with the run: a plateau longer than the fixed patience that
//! breaks later (the sort task with the seed's +-x^2 loss at d = 50) does not end the run.

use dlm_tasks::trainer::{
    fit, fit_with, patience_now, EpochCursor, EpochProgress, EpochRecord, FitHooks, FitOptions,
    FitState, Task,
};

/// A task that replays scripted per-epoch values of the loss and of the watched metric.
struct Scripted {
    loss: Vec<f64>,
    watched: Vec<f64>,
}

impl Task for Scripted {
    fn train_steps(
        &mut self,
        epoch: u64,
        _from: Option<EpochCursor>,
        _stop: &dyn Fn() -> bool,
    ) -> dlm_core::Result<EpochProgress> {
        let e = epoch as usize;
        Ok(EpochProgress::Done(EpochRecord {
            epoch,
            loss: self.loss[e.min(self.loss.len() - 1)],
            watched: self.watched[e.min(self.watched.len() - 1)],
            perturbed_loss: 0.0,
            sigma: 1.0,
            sigma_min: 0.5,
            sigma_max: 2.0,
            sigma_grad_abs: 0.1,
            epsilon: -1.0,
            zero_rate: 0.0,
            zero_rate_with_loss: 0.0,
            test_accuracy: (epoch == 1).then_some(0.5),
        }))
    }
}

fn options(patience: u64, growth: f64) -> FitOptions {
    FitOptions {
        max_epochs: 1000,
        patience,
        patience_growth: growth,
        min_delta: 0.0,
        window: 1,
    }
}

/// Improves for 120 epochs, stalls for 65 (longer than a patience of 50), improves again until
/// epoch 205, then stays put.
fn stall_then_improve() -> Vec<f64> {
    (0..1000)
        .map(|e| match e {
            0..120 => 1.0 - e as f64 / 200.0,
            120..185 => 0.4,
            185..205 => 0.4 - (e - 184) as f64 / 100.0,
            _ => 0.2,
        })
        .collect()
}

#[test]
fn early_stopping_watches_the_scale_free_metric_not_the_loss() {
    // The loss is flat from the start (a loss whose value no longer shows the errors left), the
    // watched metric improves for 300 epochs: the run must not stop on the loss.
    let mut t = Scripted {
        loss: vec![1e-3],
        watched: (0..300).map(|e| 1.0 - e as f64 / 300.0).collect(),
    };
    let r = fit(
        &mut t,
        &options(50, 0.0),
        &mut |_: &EpochRecord, _: bool| {},
    )
    .unwrap();
    assert!(r.stopped_early);
    assert_eq!(r.best_epoch, 299);
    assert_eq!(r.epochs_run, 350);
    // Reversed: a falling loss with a flat watched metric stops after the patience.
    let mut t = Scripted {
        loss: (0..300).map(|e| 1.0 - e as f64 / 300.0).collect(),
        watched: vec![0.5],
    };
    let r = fit(
        &mut t,
        &options(50, 0.0),
        &mut |_: &EpochRecord, _: bool| {},
    )
    .unwrap();
    assert_eq!((r.best_epoch, r.epochs_run), (0, 51));
}

#[test]
fn patience_grows_with_the_run_and_outlasts_a_stall() {
    let run = |growth: f64| {
        let mut t = Scripted {
            loss: vec![0.0],
            watched: stall_then_improve(),
        };
        fit(
            &mut t,
            &options(50, growth),
            &mut |_: &EpochRecord, _: bool| {},
        )
        .unwrap()
    };
    // A fixed patience of 50 ends the run in the stall (best epoch 120).
    let fixed = run(0.0);
    assert_eq!((fixed.best_epoch, fixed.epochs_run), (120, 171));
    // Growing patience waits as long as the run took to its best, and reaches the end.
    let grown = run(1.0);
    assert_eq!(grown.best_epoch, 204);
    assert_eq!(grown.epochs_run, 204 + 205 + 1);
    assert!(grown.stopped_early);

    let mut s = FitState {
        best_epoch: 9,
        ..FitState::default()
    };
    assert_eq!(patience_now(&options(50, 1.0), &s), 50);
    s.best_epoch = 99;
    assert_eq!(patience_now(&options(50, 1.0), &s), 100);
    assert_eq!(patience_now(&options(50, 0.5), &s), 50);
    assert_eq!(patience_now(&options(50, 0.0), &s), 50);
}

#[test]
fn the_watched_metric_and_sigma_range_survive_the_training_state() {
    struct Nothing;
    impl<T: ?Sized> FitHooks<T> for Nothing {
        fn on_epoch(&mut self, _: &EpochRecord, _: bool) {}
    }
    let mut t = Scripted {
        loss: vec![3.0, 2.0, 1.0],
        watched: vec![0.3, 0.2, 0.25],
    };
    let mut state = FitState::default();
    let mut o = options(0, 0.0);
    o.max_epochs = 3;
    fit_with(&mut t, &o, &mut state, &mut Nothing).unwrap();
    assert_eq!(state.best_epoch, 1);
    let back = FitState::from_bytes(&state.to_bytes(), "test").unwrap();
    assert_eq!(back, state);
    assert_eq!(back.history[2].watched, 0.25);
    assert_eq!(
        back.history
            .iter()
            .map(|r| r.test_accuracy)
            .collect::<Vec<_>>(),
        [None, Some(0.5), None]
    );
    assert_eq!(
        (back.history[0].sigma_min, back.history[0].sigma_max),
        (0.5, 2.0)
    );
    // A state of the previous layout is refused with a reason.
    let mut old = state.to_bytes();
    old[..8].copy_from_slice(b"DLMFIT01");
    let err = FitState::from_bytes(&old, "old").unwrap_err().to_string();
    assert!(err.contains("older dlm"), "{err}");
}
