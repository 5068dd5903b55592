//! The torch scorers through the `Scorer` trait, on the CPU (and on a GPU where libtorch sees
//! one: see `cuda_*`): shapes, gradients against finite differences, training, save/load,
//! devices.

use dlm_core::{DlmError, Registry, Scorer, Spec};
use ndarray::{ArrayD, IxDyn};

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register_builtin("dlm-plugin-torch", dlm_plugin_torch::register)
        .unwrap();
    r
}

fn make(spec: &str) -> Box<dyn Scorer> {
    let spec: Spec = spec.parse().unwrap();
    registry()
        .scorer(&spec)
        .unwrap_or_else(|e| panic!("{spec}: {e}"))
}

fn try_make(spec: &str) -> Result<Box<dyn Scorer>, DlmError> {
    registry().scorer(&spec.parse().unwrap())
}

/// Deterministic values in [-1, 1) (or [0, 1) with `positive`).
fn values(n: usize, salt: u64, positive: bool) -> Vec<f64> {
    let mut s = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 11) as f64 / (1u64 << 53) as f64;
            if positive {
                u
            } else {
                2.0 * u - 1.0
            }
        })
        .collect()
}

fn array(shape: &[usize], salt: u64, positive: bool) -> ArrayD<f64> {
    let n = shape.iter().product();
    ArrayD::from_shape_vec(IxDyn(shape), values(n, salt, positive)).unwrap()
}

#[test]
fn forward_shapes_of_every_scorer() {
    let cases: &[(&str, &[usize], &[usize])] = &[
        ("torch-mlp:sizes=3-5-2", &[4, 3], &[4, 2]),
        ("torch-mlp:sizes=3-5-2", &[2, 4, 3], &[2, 4, 2]),
        ("torch-mlp:sizes=3-2,out=softplus", &[3], &[2]),
        ("torch-lenet", &[2, 784], &[2, 500]),
        ("torch-lenet:emb=8,input=1x16x16", &[2, 256], &[2, 8]),
        ("torch-lenet:emb=8,input=1x16x16", &[2, 1, 16, 16], &[2, 8]),
        ("torch-resnet18:width=2,input=1x28x28", &[2, 784], &[2, 16]),
        ("torch-resnet18:width=2,emb=5", &[2, 3 * 32 * 32], &[2, 5]),
        ("torch-sigma-mnist", &[2, 784], &[2, 1]),
        ("torch-sigma-cifar", &[2, 3072], &[2, 1]),
        ("torch-sigma-cifar:input=1x6x6", &[3, 36], &[3, 1]),
    ];
    for &(spec, input, output) in cases {
        let mut s = make(spec);
        assert_eq!(s.output_shape(input).unwrap(), output, "{spec}");
        let x = array(input, 1, true);
        for train in [false, true] {
            let y = s.forward(x.view(), train).unwrap();
            assert_eq!(y.shape(), output, "{spec} train={train}");
            assert!(y.iter().all(|v| v.is_finite()), "{spec}");
            if spec.starts_with("torch-sigma") {
                assert!(y.iter().all(|&v| v > 0.0), "{spec}: softplus output");
            }
        }
        assert!(s.num_params() > 0);
        assert_eq!(s.params().len(), s.num_params());
        assert_eq!(s.device(), "cpu");
    }
}

#[test]
fn wrong_shapes_and_options_are_errors() {
    let mut s = make("torch-lenet:emb=4,input=1x16x16");
    assert!(matches!(
        s.output_shape(&[2, 255]),
        Err(DlmError::ShapeMismatch { .. })
    ));
    assert!(s.forward(array(&[2, 255], 0, true).view(), false).is_err());
    // backward before any training forward, and with a wrongly shaped gradient.
    assert!(s.backward(array(&[2, 4], 0, false).view()).is_err());
    s.forward(array(&[2, 256], 0, true).view(), true).unwrap();
    assert!(s.backward(array(&[2, 5], 0, false).view()).is_err());
    s.backward(array(&[2, 4], 0, false).view()).unwrap();
    assert!(matches!(
        s.set_params(&[1.0]),
        Err(DlmError::ShapeMismatch { .. })
    ));
    for bad in [
        "torch-mlp",
        "torch-mlp:sizes=3",
        "torch-mlp:sizes=3-x",
        "torch-mlp:sizes=3-2,out=sigmoid",
        "torch-mlp:sizes=3-2,bogus=1",
        "torch-mlp:sizes=3-2,dtype=f16",
        "torch-mlp:sizes=3-2,lr=0",
        "torch-mlp:sizes=3-2,opt=adam,momentum=0.9",
        "torch-lenet:input=1x12x12",
        "torch-lenet:input=28x28",
        "torch-resnet18:width=0",
        "torch-sigma-cifar:input=3x5x5",
        "torch-mlp:sizes=3-2,device=tpu",
    ] {
        assert!(try_make(bad).is_err(), "{bad} was accepted");
    }
}

/// Compares `grads()` after one backward of `sum(out * r)` with central differences of that
/// sum in the parameters `probe`.
fn gradient_check(spec: &str, input: &[usize], probe: impl Iterator<Item = usize>) {
    let mut s = make(spec);
    let x = array(input, 7, true);
    let y = s.forward(x.view(), true).unwrap();
    let r = array(y.shape(), 11, false);
    s.zero_grad();
    s.backward(r.view()).unwrap();
    let g = s.grads();
    let p0 = s.params();
    assert_eq!(g.len(), p0.len());
    assert!(g.iter().any(|&v| v != 0.0), "{spec}: all gradients zero");
    let f = |p: &[f64], s: &mut Box<dyn Scorer>| -> f64 {
        s.set_params(p).unwrap();
        let y = s.forward(x.view(), true).unwrap();
        (&y * &r).sum()
    };
    let h = 1e-6;
    let mut checked = 0;
    for i in probe {
        let mut p = p0.clone();
        p[i] = p0[i] + h;
        let up = f(&p, &mut s);
        p[i] = p0[i] - h;
        let down = f(&p, &mut s);
        let fd = (up - down) / (2.0 * h);
        assert!(
            (fd - g[i]).abs() <= 1e-6 + 1e-5 * g[i].abs(),
            "{spec}: parameter {i}: backward {} vs finite difference {fd}",
            g[i]
        );
        checked += 1;
    }
    assert!(checked > 0);
}

#[test]
fn gradients_match_finite_differences_mlp() {
    let spec = "torch-mlp:sizes=3-4-2,hidden=tanh,out=softplus,dtype=f64,seed=3";
    let n = make(spec).num_params();
    gradient_check(spec, &[5, 3], 0..n);
    // ReLU hidden layers, identity output, leading batch axes.
    let spec = "torch-mlp:sizes=3-6-2,dtype=f64,seed=4";
    let n = make(spec).num_params();
    gradient_check(spec, &[2, 3, 3], 0..n);
}

#[test]
fn gradients_match_finite_differences_conv() {
    let spec = "torch-sigma-cifar:input=2x8x8,dtype=f64,seed=5";
    let n = make(spec).num_params();
    gradient_check(spec, &[3, 128], 0..n);
    // Batch norm (batch statistics in training), strided blocks, shortcuts, pooling, head.
    let spec = "torch-resnet18:width=2,input=1x8x8,emb=3,dtype=f64,seed=6";
    let n = make(spec).num_params();
    gradient_check(spec, &[3, 64], (0..n).step_by(23));
    let spec = "torch-lenet:input=1x16x16,emb=6,dtype=f64,seed=7";
    let n = make(spec).num_params();
    gradient_check(spec, &[2, 256], (0..n).step_by(97));
}

/// Mean squared error of `s` on `(x, t)`, with a training step when `train`.
fn mse_step(s: &mut Box<dyn Scorer>, x: &ArrayD<f64>, t: &ArrayD<f64>, train: bool) -> f64 {
    let y = s.forward(x.view(), train).unwrap();
    let d = &y - t;
    let n = d.len() as f64;
    if train {
        s.backward((&d * (2.0 / n)).view()).unwrap();
        s.step().unwrap();
        assert!(s.grads().iter().all(|&g| g == 0.0), "step clears gradients");
    }
    d.mapv(|v| v * v).sum() / n
}

#[test]
fn training_decreases_the_loss() {
    let x = array(&[32, 2], 1, false);
    let t = ArrayD::from_shape_fn(IxDyn(&[32, 1]), |i| {
        let (a, b) = (x[[i[0], 0]], x[[i[0], 1]]);
        (2.0 * a).sin() + b * b
    });
    for spec in [
        "torch-mlp:sizes=2-16-1,lr=0.01",
        "torch-mlp:sizes=2-16-1,opt=sgd,lr=0.05,momentum=0.9",
        "torch-mlp:sizes=2-16-1,lr=0.01,dtype=f64",
    ] {
        let mut s = make(spec);
        let before = mse_step(&mut s, &x, &t, false);
        for _ in 0..100 {
            mse_step(&mut s, &x, &t, true);
        }
        let after = mse_step(&mut s, &x, &t, false);
        assert!(after < 0.3 * before, "{spec}: {before} -> {after}");
    }
    // A convolutional net (batch norm) fits random targets on a few images.
    let mut s = make("torch-resnet18:width=2,input=1x8x8,emb=2,lr=0.01");
    let x = array(&[4, 64], 2, true);
    let t = array(&[4, 2], 3, false);
    let first = mse_step(&mut s, &x, &t, true);
    let mut last = first;
    for _ in 0..30 {
        last = mse_step(&mut s, &x, &t, true);
    }
    assert!(last < 0.5 * first, "resnet: {first} -> {last}");
}

#[test]
fn seeds_and_dtypes() {
    let a = make("torch-lenet:input=1x16x16,emb=4,seed=9");
    let b = make("torch-lenet:input=1x16x16,emb=4,seed=9");
    let c = make("torch-lenet:input=1x16x16,emb=4,seed=10");
    assert_eq!(a.params(), b.params());
    assert_ne!(a.params(), c.params());
    // f64 starts from the same (f32-initialised) weights and computes the same function.
    let mut s32 = make("torch-mlp:sizes=3-8-2,seed=2");
    let mut s64 = make("torch-mlp:sizes=3-8-2,seed=2,dtype=f64");
    assert_eq!(s32.params(), s64.params());
    let x = array(&[4, 3], 5, false);
    let y32 = s32.forward(x.view(), false).unwrap();
    let y64 = s64.forward(x.view(), false).unwrap();
    assert!(y32.iter().zip(&y64).all(|(a, b)| (a - b).abs() < 1e-5));
    assert_ne!(y32, y64, "f32 rounds");
}

fn saved(s: &dyn Scorer) -> Vec<u8> {
    let mut buf = Vec::new();
    s.save(&mut buf).unwrap();
    buf
}

#[test]
fn save_load_round_trip_restores_weights_buffers_and_optimizer() {
    let spec = |seed: u64| format!("torch-resnet18:width=2,input=1x8x8,emb=3,lr=0.01,seed={seed}");
    let x = array(&[4, 64], 4, true);
    let t = array(&[4, 3], 5, false);
    let mut a = make(&spec(1));
    for _ in 0..3 {
        mse_step(&mut a, &x, &t, true);
    }
    let bytes = saved(a.as_ref());
    let mut b = make(&spec(2));
    assert_ne!(a.params(), b.params());
    b.load(&mut bytes.as_slice()).unwrap();
    assert_eq!(a.params(), b.params());
    // Eval mode uses the batch-norm running statistics: restored too.
    assert_eq!(
        a.forward(x.view(), false).unwrap(),
        b.forward(x.view(), false).unwrap()
    );
    // Adam's moments and step count are restored: the next steps agree exactly.
    for _ in 0..2 {
        mse_step(&mut a, &x, &t, true);
        mse_step(&mut b, &x, &t, true);
    }
    assert_eq!(a.params(), b.params());
    assert_eq!(saved(a.as_ref()), saved(b.as_ref()));
    // f32 weights load into an f64 scorer (stored as f64).
    let mut c = make(&format!("{},dtype=f64", spec(3)));
    c.load(&mut saved(a.as_ref()).as_slice()).unwrap();
    let (ya, yc) = (
        a.forward(x.view(), false).unwrap(),
        c.forward(x.view(), false).unwrap(),
    );
    assert!(ya.iter().zip(&yc).all(|(u, v)| (u - v).abs() < 1e-5));
    // Saved with SGD, loaded into Adam: the weights come, the optimizer starts afresh.
    let mut d = make("torch-mlp:sizes=3-2,opt=sgd,momentum=0.5");
    let xd = array(&[2, 3], 1, false);
    d.forward(xd.view(), true).unwrap();
    d.backward(array(&[2, 2], 2, false).view()).unwrap();
    d.step().unwrap();
    let mut e = make("torch-mlp:sizes=3-2,seed=8");
    e.load(&mut saved(d.as_ref()).as_slice()).unwrap();
    assert_eq!(d.params(), e.params());
}

#[test]
fn malformed_or_mismatched_weights_are_refused() {
    let x = array(&[2, 3], 1, false);
    let mut s = make("torch-mlp:sizes=3-4-2,seed=1");
    let before = s.params();
    let y_before = s.forward(x.view(), false).unwrap();
    let good = saved(make("torch-mlp:sizes=3-4-2,seed=2").as_ref());
    let refused = |s: &mut Box<dyn Scorer>, bytes: &[u8]| {
        let e = s.load(&mut &bytes[..]).unwrap_err();
        assert!(matches!(e, DlmError::Format { .. }), "{e}");
    };
    refused(&mut s, &[]);
    refused(&mut s, &[1, 2, 3]);
    refused(&mut s, &u64::MAX.to_le_bytes());
    for cut in (0..good.len()).step_by(7).chain([good.len() - 1]) {
        refused(&mut s, &good[..cut]);
    }
    // A wrong length prefix, garbage payload, trailing bytes.
    let mut long = good.clone();
    long[0] = long[0].wrapping_add(1);
    refused(&mut s, &long);
    let mut garbage = good.clone();
    for b in &mut garbage[8..24] {
        *b = 0xAB;
    }
    refused(&mut s, &garbage);
    // Another architecture, other sizes, another scorer.
    refused(&mut s, &saved(make("torch-mlp:sizes=3-5-2").as_ref()));
    refused(&mut s, &saved(make("torch-mlp:sizes=3-4-4-2").as_ref()));
    refused(
        &mut s,
        &saved(make("torch-sigma-cifar:input=1x6x6").as_ref()),
    );
    // Every single corrupted byte: an error or a consistent load, never a panic.
    for i in (8..good.len()).step_by(5) {
        let mut c = good.clone();
        c[i] ^= 0x5A;
        let mut t = make("torch-mlp:sizes=3-4-2,seed=1");
        let _ = t.load(&mut c.as_slice());
    }
    // Nothing was changed by the refused loads.
    assert_eq!(s.params(), before);
    assert_eq!(s.forward(x.view(), false).unwrap(), y_before);
    s.load(&mut good.as_slice()).unwrap();
    assert_ne!(s.params(), before);
}

#[test]
fn cuda_is_refused_clearly_without_a_gpu() {
    if tch::Cuda::is_available() {
        eprintln!("CUDA is available: see cuda_matches_cpu");
        return;
    }
    for spec in [
        "torch-mlp:sizes=3-2,device=cuda",
        "torch-mlp:sizes=3-2,device=cuda:0",
        "torch-lenet:device=cuda:1",
    ] {
        match try_make(spec) {
            Err(e @ DlmError::Unsupported { .. }) => {
                let m = e.to_string();
                assert!(m.contains("CUDA") && m.contains("device=cpu"), "{m}");
            }
            Err(e) => panic!("{spec}: unexpected error {e}"),
            Ok(_) => panic!("{spec}: accepted without a GPU"),
        }
    }
    let mut s = make("torch-mlp:sizes=3-2,device=auto");
    assert_eq!(s.device(), "cpu");
    assert!(matches!(
        s.to_device("cuda"),
        Err(DlmError::Unsupported { .. })
    ));
    assert!(s.to_device("gpu").is_err());
    s.to_device("cpu").unwrap();
    assert_eq!(s.device(), "cpu");
    s.forward(array(&[1, 3], 0, false).view(), false).unwrap();
}

/// On a GPU host: the same network gives the same numbers on the GPU as on the CPU, moves
/// between devices with its optimizer, and saves on one and loads on the other.
#[test]
fn cuda_matches_cpu() {
    if !tch::Cuda::is_available() {
        eprintln!("no CUDA device visible to libtorch: skipped");
        return;
    }
    let spec = "torch-resnet18:width=4,input=3x16x16,emb=5,dtype=f64,lr=0.01,seed=3";
    let mut cpu = make(spec);
    let mut gpu = make(&format!("{spec},device=cuda"));
    assert_eq!(gpu.device(), "cuda:0");
    assert_eq!(cpu.params(), gpu.params());
    let x = array(&[6, 3 * 16 * 16], 1, true);
    let t = array(&[6, 5], 2, false);
    for _ in 0..3 {
        let (a, b) = (
            mse_step(&mut cpu, &x, &t, true),
            mse_step(&mut gpu, &x, &t, true),
        );
        assert!((a - b).abs() < 1e-9 * (1.0 + a.abs()), "{a} vs {b}");
    }
    let close = |u: &[f64], v: &[f64], tol: f64| u.iter().zip(v).all(|(a, b)| (a - b).abs() < tol);
    assert!(close(&cpu.params(), &gpu.params(), 1e-8));
    // Gradients.
    let r = array(&[6, 5], 3, false);
    cpu.forward(x.view(), true).unwrap();
    gpu.forward(x.view(), true).unwrap();
    cpu.backward(r.view()).unwrap();
    gpu.backward(r.view()).unwrap();
    assert!(close(&cpu.grads(), &gpu.grads(), 1e-8));
    // Saved on the GPU, loaded on the CPU.
    let mut back = make(spec);
    back.load(&mut saved(gpu.as_ref()).as_slice()).unwrap();
    let (ya, yb) = (
        gpu.forward(x.view(), false).unwrap(),
        back.forward(x.view(), false).unwrap(),
    );
    assert!(close(ya.as_slice().unwrap(), yb.as_slice().unwrap(), 1e-8));
    // Moves with its optimizer state, and keeps training in f32 on the GPU.
    let mut s = make("torch-lenet:emb=16,lr=0.001");
    let x = array(&[8, 784], 4, true);
    let t = array(&[8, 16], 5, false);
    mse_step(&mut s, &x, &t, true);
    s.to_device("cuda:0").unwrap();
    assert_eq!(s.device(), "cuda:0");
    let first = mse_step(&mut s, &x, &t, true);
    let mut last = first;
    for _ in 0..20 {
        last = mse_step(&mut s, &x, &t, true);
    }
    assert!(last < first, "{first} -> {last}");
    s.to_device("cpu").unwrap();
    mse_step(&mut s, &x, &t, true);
    assert!(s
        .to_device(&format!("cuda:{}", tch::Cuda::device_count()))
        .is_err());
}

/// Seconds per training step (forward, backward, Adam) of the full ResNet-18 on a CIFAR batch
/// of 128, on the CPU and, where there is one, the GPU. Not a check: run it by hand with
/// `cargo test --release --test scorers -- --ignored --nocapture timing`.
#[test]
#[ignore]
fn timing_resnet18_cifar_batch_128() {
    let x = array(&[128, 3072], 1, true);
    let g = array(&[128, 512], 2, false);
    let mut devices = vec![("cpu", 2)];
    if tch::Cuda::is_available() {
        devices.push(("cuda", 20));
    }
    for (device, steps) in devices {
        let mut s = make(&format!("torch-resnet18:device={device}"));
        let mut run = |n: usize| {
            for _ in 0..n {
                s.forward(x.view(), true).unwrap();
                s.backward(g.view()).unwrap();
                s.step().unwrap();
            }
        };
        run(2);
        let t = std::time::Instant::now();
        run(steps);
        if device == "cuda" {
            tch::Cuda::synchronize(0);
        }
        let per = t.elapsed().as_secs_f64() / steps as f64;
        eprintln!(
            "torch-resnet18 (11.2M params), batch 128, {device}: {per:.4} s per training step"
        );
    }
}
