//! A run stopped anywhere (between epochs or between two steps of an epoch), saved to a
//! checkpoint, read back into freshly built components and continued, ends bit-identical to
//! the uninterrupted run: weights, optimizer states, eps, history and early-stopping state.

use dlm_core::{DlmEstimator, Registry, Spec};
use dlm_tasks::checkpoint::Checkpoint;
use dlm_tasks::knn::{KnnSettings, KnnTask};
use dlm_tasks::model_file::ModelFile;
use dlm_tasks::sort::{SortSettings, SortTask};
use dlm_tasks::trainer::{fit_with, EpochRecord, FitHooks, FitOptions, FitState, Task};
use dlm_tasks::{NoiseScale, PerturbedModel};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register_builtin("matching", dlm_plugin_matching::register)
        .unwrap();
    r.register_builtin("topk", dlm_plugin_topk::register)
        .unwrap();
    r.register_builtin("noise", dlm_plugin_noise::register)
        .unwrap();
    r.register_builtin("mlp", dlm_plugin_mlp::register).unwrap();
    r
}

fn sort_task(train_size: usize) -> SortTask {
    let r = registry();
    SortTask::new(
        SortSettings {
            n: 4,
            batch: 8,
            train_size,
            estimator: DlmEstimator {
                epsilon: -12.0,
                draws: 2,
                escape_factor: 1.1,
                max_abs_epsilon: 1e3,
            },
            seed: 3,
        },
        r.structure(&Spec::named("matching")).unwrap(),
        r.noise(&"gumbel:variance=3".parse().unwrap()).unwrap(),
        r.loss(&Spec::named("hamming")).unwrap(),
        r.scorer(&"mlp:sizes=1-8-4,opt=adam,lr=0.1,seed=3".parse().unwrap())
            .unwrap(),
        // A learned sigma (SGD with momentum: its optimizer state matters too).
        NoiseScale::Learned(
            r.scorer(
                &"mlp:sizes=4-1,out=softplus,opt=sgd,lr=1e-3,momentum=0.9,seed=4"
                    .parse()
                    .unwrap(),
            )
            .unwrap(),
        ),
    )
    .unwrap()
}

fn knn_task() -> KnnTask {
    let r = registry();
    let split = dlm_tasks::data::load("digits", Path::new(".")).unwrap();
    KnnTask::new(
        KnnSettings {
            k: 3,
            queries: 100,
            candidates: 60,
            estimator: DlmEstimator {
                epsilon: -0.1,
                draws: 1,
                escape_factor: 1.1,
                max_abs_epsilon: 0.9999,
            },
            seed: 5,
        },
        split,
        r.structure(&Spec::named("topk").with("k", 3)).unwrap(),
        r.noise(&Spec::named("gumbel")).unwrap(),
        r.loss(&Spec::named("label-mismatch")).unwrap(),
        r.scorer(&"mlp:sizes=64-16,opt=adam,lr=0.01,seed=5".parse().unwrap())
            .unwrap(),
        NoiseScale::Fixed(0.3),
    )
    .unwrap()
}

/// Stops after `stop_after` calls of `stop()` (counting every step and epoch boundary).
struct StopAfter {
    calls: Cell<u64>,
    stop_after: u64,
}

impl<T: ?Sized> FitHooks<T> for StopAfter {
    fn on_epoch(&mut self, _: &EpochRecord, _: bool) {}
    fn stop(&self) -> bool {
        self.calls.set(self.calls.get() + 1);
        self.calls.get() > self.stop_after
    }
}

fn options(epochs: u64, patience: u64) -> FitOptions {
    FitOptions {
        max_epochs: epochs,
        patience,
        patience_growth: 0.0,
        min_delta: 0.0,
        window: 3,
    }
}

fn model_bytes(model: &PerturbedModel) -> Vec<u8> {
    let mut m = ModelFile::default();
    model.save_into(&mut m).unwrap();
    m.to_bytes()
}

/// Runs `epochs` straight, and again stopped after `stop_after` stop checks, saved, restored
/// into a fresh task and continued; asserts both end identical.
fn check<T: Task>(
    build: impl Fn() -> T,
    model: impl Fn(&mut T) -> &mut PerturbedModel,
    epochs: u64,
    patience: u64,
    stop_after: u64,
) -> FitState {
    let opts = options(epochs, patience);
    let mut straight = build();
    let mut s1 = FitState::default();
    let never = &mut StopAfter {
        calls: Cell::new(0),
        stop_after: u64::MAX,
    };
    let r1 = fit_with(&mut straight, &opts, &mut s1, never).unwrap();
    assert!(!r1.interrupted);

    let mut first = build();
    let mut s2 = FitState::default();
    let r2 = fit_with(
        &mut first,
        &opts,
        &mut s2,
        &mut StopAfter {
            calls: Cell::new(0),
            stop_after,
        },
    )
    .unwrap();
    assert!(r2.interrupted, "stop_after {stop_after} did not interrupt");
    let ck = Checkpoint::capture(
        &BTreeMap::new(),
        &BTreeMap::new(),
        &[],
        model(&mut first),
        &s2,
    )
    .unwrap();
    let bytes = ck.to_file().unwrap().to_bytes();
    drop(first);
    let p = Path::new("ck");
    let back = Checkpoint::from_file(ModelFile::from_bytes(&bytes, p).unwrap(), p).unwrap();
    assert_eq!(back.state, s2);
    let mut resumed = build();
    back.restore(model(&mut resumed), p).unwrap();
    let mut s3 = back.state.clone();
    let r3 = fit_with(&mut resumed, &opts, &mut s3, never).unwrap();
    assert!(!r3.interrupted);
    assert_eq!(r3.history, r1.history);
    assert_eq!(r3.best_loss.to_bits(), r1.best_loss.to_bits());
    assert_eq!(
        (r3.best_epoch, r3.stopped_early, r3.epochs_run),
        (r1.best_epoch, r1.stopped_early, r1.epochs_run)
    );
    assert_eq!(
        model_bytes(model(&mut resumed)),
        model_bytes(model(&mut straight))
    );
    s3.seconds = s1.seconds;
    assert_eq!(s3, s1);
    s1
}

#[test]
fn sort_resumes_identically_between_epochs_and_within_one() {
    // One step per epoch (fresh batches): stops fall between epochs.
    for stop_after in [0, 1, 4] {
        check(|| sort_task(0), SortTask::model_mut, 8, 0, stop_after);
    }
    // A fixed training set of 30 sequences, 4 steps an epoch: stops inside epochs too.
    for stop_after in [1, 2, 3, 6, 9] {
        check(|| sort_task(30), SortTask::model_mut, 5, 0, stop_after);
    }
}

#[test]
fn early_stopping_state_survives_a_resume() {
    // With patience 2 the run stops early; resuming from before and inside the stopping
    // window gives the same stop.
    let s = check(|| sort_task(0), SortTask::model_mut, 60, 2, 3);
    assert!(s.stopped_early, "{s:?}");
    check(
        || sort_task(0),
        SortTask::model_mut,
        60,
        2,
        s.epochs_done - 1,
    );
}

#[test]
fn knn_resumes_identically_within_an_epoch() {
    // 1257 training digits, 100 queries a step: 12 steps an epoch.
    for stop_after in [5, 13] {
        check(knn_task, KnnTask::model_mut, 2, 0, stop_after);
    }
}

#[test]
fn fit_state_bytes_round_trip_and_corruption_is_an_error() {
    let mut opts_task = sort_task(30);
    let mut s = FitState::default();
    let hooks = &mut StopAfter {
        calls: Cell::new(0),
        stop_after: 6,
    };
    fit_with(&mut opts_task, &options(5, 0), &mut s, hooks).unwrap();
    assert!(s.cursor.is_some());
    let b = s.to_bytes();
    assert_eq!(FitState::from_bytes(&b, "t").unwrap(), s);
    for cut in 0..b.len() {
        assert!(FitState::from_bytes(&b[..cut], "t").is_err(), "cut {cut}");
    }
    let mut extra = b.clone();
    extra.push(0);
    assert!(FitState::from_bytes(&extra, "t").is_err());
    // A huge announced history is refused before anything is allocated.
    let mut huge = b.clone();
    let at = 8 + 8 + 8 + 8 + 1 + 8 + 8 + 8 * s.recent.len();
    huge[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = FitState::from_bytes(&huge, "t").unwrap_err().to_string();
    assert!(e.contains("announced"), "{e}");
    // Every single-byte change is either refused or parsed without panicking.
    for i in 0..b.len() {
        let mut m = b.clone();
        m[i] ^= 0xff;
        let _ = FitState::from_bytes(&m, "t");
    }
}

#[test]
fn a_model_file_is_not_a_checkpoint() {
    let mut t = sort_task(0);
    let mut m = ModelFile::default();
    m.header.insert("task".into(), "sort".into());
    t.model_mut().save_into(&mut m).unwrap();
    let e = Checkpoint::from_file(m, Path::new("m.dlm"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a checkpoint"), "{e}");
}

#[test]
fn corrupt_checkpoints_are_errors_never_panics() {
    let mut t = sort_task(30);
    let mut st = FitState::default();
    let hooks = &mut StopAfter {
        calls: Cell::new(0),
        stop_after: 3,
    };
    fit_with(&mut t, &options(3, 0), &mut st, hooks).unwrap();
    let mut settings = BTreeMap::new();
    settings.insert("n".to_string(), "4".to_string());
    let args = vec![("--n".to_string(), "4".to_string())];
    let ck = Checkpoint::capture(&BTreeMap::new(), &settings, &args, t.model(), &st).unwrap();
    let bytes = ck.to_file().unwrap().to_bytes();
    let p = Path::new("ck");
    let parse = |b: &[u8]| -> Option<()> {
        let c = Checkpoint::from_file(ModelFile::from_bytes(b, p).ok()?, p).ok()?;
        c.restore(sort_task(30).model_mut(), p).ok()
    };
    assert!(parse(&bytes).is_some());
    for cut in 0..bytes.len() {
        assert!(parse(&bytes[..cut]).is_none(), "cut at {cut} accepted");
    }
    // Flip each byte in turn (every 7th, to stay fast): an error or a valid checkpoint.
    for i in (0..bytes.len()).step_by(7) {
        let mut m = bytes.clone();
        m[i] ^= 0x5a;
        let _ = parse(&m);
    }
    // Line breaks cannot be stored in the header.
    let bad = vec![("--mu".to_string(), "a\nb".to_string())];
    let e = Checkpoint::capture(&BTreeMap::new(), &settings, &bad, t.model(), &st)
        .unwrap()
        .to_file()
        .unwrap_err()
        .to_string();
    assert!(e.contains("line break"), "{e}");
}
