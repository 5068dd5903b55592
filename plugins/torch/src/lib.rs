//! # dlm-plugin-torch
//!
//! [`Scorer`]s on libtorch (through [`tch`] 0.24, PyTorch 2.11.0), on the CPU or a CUDA GPU.
//! Built apart from the main workspace and loaded at run time
//! (`dlm --plugin target/release/libdlm_plugin_torch.so`), so `dlm` itself never links
//! libtorch; see `README.md` for building it.
//!
//! | name | network | output |
//! |------|---------|--------|
//! | `torch-mlp` | dense layers `sizes=IN-H-..-OUT` on the last axis, `hidden=relu`, `out=identity` | `[..., OUT]` |
//! | `torch-lenet` | Conv5x5(20) ReLU MaxPool2, Conv5x5(50) ReLU MaxPool2, FC `emb` (500) ReLU | `[N, emb]` |
//! | `torch-resnet18` | CIFAR ResNet-18 (3x3 stem), `width=` base channels (64), average pooling, FC to `emb` unless `emb = 8*width` (the default) | `[N, emb]` |
//! | `torch-sigma-mnist` | the LeNet trunk, FC 500 ReLU, FC 1 Softplus | `[N, 1]` |
//! | `torch-sigma-cifar` | Conv5x5(20) ReLU MaxPool2, FC 1 Softplus | `[N, 1]` |
//!
//! The convolutional scorers read flattened images `[N, C*H*W]` (channel-major, as the data
//! loaders give them) or `[N, C, H, W]`; `input=CxHxW` gives the shape (defaults: `1x28x28`
//! for LeNet and sigma-mnist, `3x32x32` for ResNet-18 and sigma-cifar).
//!
//! Options of every scorer: `opt=adam|sgd` (adam), `lr=` (1e-3), `momentum=` (0, SGD only),
//! `seed=` (0; `tch::manual_seed` before the initialisation), `device=cpu|cuda|cuda:N|auto`
//! (cpu; `auto` takes `cuda:0` when libtorch sees a GPU), `dtype=f32|f64` (f32; f64 for
//! gradient checks).
//!
//! Values cross the plugin boundary as f64 arrays; [`Scorer::forward`] keeps the output tensor
//! (with its autograd graph) when training, and [`Scorer::backward`] back-propagates
//! `d loss / d output` from it into the parameters' gradients. Parameters are flattened in the
//! order of their `VarStore` names (sorted).

pub mod nets;
pub mod optim;
pub mod serial;

use dlm_core::plugin::Registrar;
use dlm_core::{Config, DlmError, Result, Scorer};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use nets::{Activation, Arch, ImageShape, Net};
use optim::{Method, Optimizer};
use serial::{Stored, StoredVar};
use std::io::{Read, Write};
use std::sync::Mutex;
use tch::{nn, Device, Kind, TchError, Tensor};

/// Where the scorers run, as the options spell it: `cpu`, `cuda`, `cuda:N` or `auto`.
///
/// Asking for CUDA when libtorch sees no GPU (a CPU-only libtorch, no driver, no device) is a
/// [`DlmError::Unsupported`] error that says so.
pub fn parse_device(spec: &str, component: &str) -> Result<Device> {
    let spec = spec.trim();
    let index = match spec {
        "cpu" => return Ok(Device::Cpu),
        "auto" => {
            return Ok(if tch::Cuda::is_available() {
                Device::Cuda(0)
            } else {
                Device::Cpu
            })
        }
        "cuda" => 0,
        s => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => i,
            _ => {
                return Err(DlmError::invalid(
                    format!("{component}:device"),
                    format!("'{spec}' is not one of cpu, cuda, cuda:N, auto"),
                ))
            }
        },
    };
    if !tch::Cuda::is_available() {
        return Err(DlmError::Unsupported {
            component: format!("scorer '{component}'"),
            what: format!("device '{spec}'"),
            hint: "libtorch sees no CUDA device (tch::Cuda::is_available() is false: no GPU or \
                   driver, or the plugin was built against a CPU-only libtorch such as the one of \
                   scripts/setup-libtorch.sh); use device=cpu, or on a GPU host rebuild the plugin \
                   against a CUDA PyTorch 2.11.0 with LIBTORCH_USE_PYTORCH=1 (plugins/torch/README.md)"
                .into(),
        });
    }
    let count = tch::Cuda::device_count().max(0) as usize;
    if index >= count {
        return Err(DlmError::invalid(
            format!("{component}:device"),
            format!(
                "'{spec}' but libtorch sees {count} CUDA device(s) (cuda:0..cuda:{})",
                count.saturating_sub(1)
            ),
        ));
    }
    Ok(Device::Cuda(index))
}

/// The name of a device as [`Scorer::device`] reports it (`cpu`, `cuda:0`, ...).
pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Serialises seeding + initialisation (libtorch's generator is global).
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// A libtorch network with its optimizer: every scorer of this plugin.
pub struct TorchScorer {
    name: String,
    arch: Arch,
    vs: nn::VarStore,
    net: Net,
    /// Trainable variables in name order (shallow copies sharing the `VarStore`'s storage).
    params: Vec<Tensor>,
    names: Vec<String>,
    opt: Optimizer,
    device: Device,
    kind: Kind,
    /// The output of the last training forward, with its graph, for `backward`.
    output: Option<Tensor>,
}

impl std::fmt::Debug for TorchScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchScorer")
            .field("name", &self.name)
            .field("arch", &self.arch)
            .field("device", &self.device)
            .field("kind", &self.kind)
            .field("method", &self.opt.method)
            .finish()
    }
}

fn tch_err(name: &str, context: &str) -> impl Fn(TchError) -> DlmError {
    let what = format!("libtorch ({context} of scorer '{name}')");
    move |e| DlmError::Numerical {
        what: what.clone(),
        message: e.to_string(),
    }
}

/// Flattens a tensor to f64 values on the CPU.
fn to_vec(t: &Tensor) -> std::result::Result<Vec<f64>, TchError> {
    let t = t
        .f_detach()?
        .f_to_device(Device::Cpu)?
        .f_to_kind(Kind::Double)?
        .f_contiguous()?;
    let n = t.numel();
    let mut v = vec![0.0; n];
    t.f_copy_data(&mut v, n)?;
    Ok(v)
}

/// A tensor of `kind` on `device` from f64 values and a shape.
fn from_values(
    data: &[f64],
    shape: &[usize],
    kind: Kind,
    device: Device,
) -> std::result::Result<Tensor, TchError> {
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    Tensor::f_from_slice(data)?
        .f_reshape(dims)?
        .f_to_kind(kind)?
        .f_to_device(device)
}

impl TorchScorer {
    /// Builds the network `arch` registered as `name`, initialised from `seed`, with optimizer
    /// `method`, in precision `kind` (`Float` or `Double`) on `device`.
    pub fn new(
        name: &str,
        arch: Arch,
        method: Method,
        seed: u64,
        kind: Kind,
        device: Device,
    ) -> Result<Self> {
        arch.validate()
            .map_err(|m| DlmError::invalid(name.to_string(), m))?;
        let e = tch_err(name, "initialisation");
        // Initialise in f32 on the CPU so that a seed gives the same network everywhere; the
        // lock keeps scorers built on other threads from drawing from the global generator
        // between the seeding and the initialisation.
        let mut vs = nn::VarStore::new(Device::Cpu);
        let net = {
            let _guard = INIT_LOCK.lock().unwrap_or_else(|p| p.into_inner());
            tch::manual_seed(seed as i64);
            Net::build(&arch, &vs.root()).map_err(&e)?
        };
        if kind == Kind::Double {
            vs.double();
        }
        if device != Device::Cpu {
            vs.set_device(device);
        }
        let mut all: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let (names, params): (Vec<String>, Vec<Tensor>) =
            all.into_iter().filter(|(_, t)| t.requires_grad()).unzip();
        let opt = Optimizer::new(method, params.len());
        Ok(TorchScorer {
            name: name.to_string(),
            arch,
            vs,
            net,
            params,
            names,
            opt,
            device,
            kind,
            output: None,
        })
    }

    /// From the options in the crate docs, for the scorer registered as `name`.
    pub fn from_config(name: &str, c: &Config) -> Result<Self> {
        let image = |default: &str| -> Result<ImageShape> {
            let raw = c.raw("input").unwrap_or(default);
            ImageShape::parse(raw).ok_or_else(|| {
                DlmError::invalid(
                    format!("{name}:input"),
                    format!("'{raw}' is not CxHxW with positive sides, e.g. 1x28x28 or 3x32x32"),
                )
            })
        };
        let arch = match name {
            "torch-mlp" => {
                let raw = c.raw("sizes").ok_or_else(|| {
                    DlmError::invalid(
                        "torch-mlp:sizes",
                        "required, e.g. torch-mlp:sizes=784-256-64",
                    )
                })?;
                let sizes = raw
                    .split('-')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|_| {
                        DlmError::invalid(
                            "torch-mlp:sizes",
                            format!(
                                "'{raw}' is not a dash-separated list of widths, e.g. 784-256-64"
                            ),
                        )
                    })?;
                let act = |key: &str, default| -> Result<Activation> {
                    let s = c.choice(key, default, &["relu", "tanh", "softplus", "identity"])?;
                    Ok(Activation::parse(s).unwrap_or(Activation::Identity))
                };
                Arch::Mlp {
                    sizes,
                    hidden: act("hidden", "relu")?,
                    out: act("out", "identity")?,
                }
            }
            "torch-lenet" => Arch::Lenet {
                input: image("1x28x28")?,
                emb: c.usize("emb", 500)?,
            },
            "torch-resnet18" => {
                let input = image("3x32x32")?;
                let width = c.usize("width", 64)?;
                Arch::Resnet18 {
                    input,
                    width,
                    emb: c.usize("emb", 8 * width)?,
                }
            }
            "torch-sigma-mnist" => Arch::SigmaMnist {
                input: image("1x28x28")?,
            },
            "torch-sigma-cifar" => Arch::SigmaCifar {
                input: image("3x32x32")?,
            },
            other => {
                return Err(DlmError::invalid(
                    "torch scorer",
                    format!("unknown architecture '{other}'"),
                ))
            }
        };
        let lr = c.f64("lr", 1e-3)?;
        if lr <= 0.0 {
            return Err(DlmError::invalid(format!("{name}:lr"), "must be positive"));
        }
        let method = match c.choice("opt", "adam", &["adam", "sgd"])? {
            "adam" => Method::adam(lr),
            _ => Method::Sgd {
                lr,
                momentum: c.f64("momentum", 0.0)?,
            },
        };
        let seed = c.u64("seed", 0)?;
        let device = parse_device(c.raw("device").unwrap_or("cpu"), name)?;
        // libtorch's CPU thread pool: with the network on a GPU its CPU work is only copying
        // scores in and out, and its spinning OpenMP threads competed with dlm's solver threads
        // (an H100 run spent 29 min of CPU in 160 s); so 1 thread there unless `threads=` says
        // otherwise. On the CPU, 0 keeps libtorch's default.
        let default_threads = if device == Device::Cpu { 0 } else { 1 };
        let threads = c.usize("threads", default_threads)?;
        if threads > 0 {
            tch::set_num_threads(threads as i32);
        }
        let kind = match c.choice("dtype", "f32", &["f32", "f64"])? {
            "f64" => Kind::Double,
            _ => Kind::Float,
        };
        TorchScorer::new(name, arch, method, seed, kind, device)
    }

    /// The architecture.
    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// The precision of the parameters and computations (`Float` or `Double`).
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Names of the trainable variables, in the order of [`Scorer::params`].
    pub fn param_names(&self) -> &[String] {
        &self.names
    }

    /// The underlying variable store.
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn err(&self, context: &str) -> impl Fn(TchError) -> DlmError {
        tch_err(&self.name, context)
    }

    fn input_error(&self, got: &[usize]) -> DlmError {
        let expected = match self.arch.image() {
            None => format!("[..., {}]", self.arch.input_width()),
            Some(i) => format!(
                "[N, {}] (flattened {i} images) or [N, {}, {}, {}]",
                i.numel(),
                i.c,
                i.h,
                i.w
            ),
        };
        DlmError::shape(format!("{} input", self.name), expected, got)
    }

    /// The input as a tensor of the network's layout, kind and device.
    fn input_tensor(&self, x: ArrayViewD<'_, f64>) -> Result<Tensor> {
        let x = x.as_standard_layout();
        let data = x.as_slice().unwrap_or(&[]);
        let shape: Vec<usize> = match self.arch.image() {
            None => x.shape().to_vec(),
            Some(i) => vec![x.shape()[0], i.c, i.h, i.w],
        };
        from_values(data, &shape, self.kind, self.device).map_err(self.err("input conversion"))
    }

    fn variables_sorted(&self) -> Vec<(String, Tensor)> {
        let mut all: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    fn stored(&self) -> std::result::Result<Stored, TchError> {
        let mut vars = Vec::new();
        for (name, t) in self.variables_sorted() {
            vars.push(StoredVar {
                trainable: t.requires_grad(),
                shape: t.size().iter().map(|&d| d as usize).collect(),
                data: to_vec(&t)?,
                name,
            });
        }
        let state = self
            .opt
            .state
            .iter()
            .map(|slots| slots.iter().map(to_vec).collect())
            .collect::<std::result::Result<_, _>>()?;
        Ok(Stored {
            scorer: self.name.clone(),
            vars,
            method: self.opt.method.code(),
            steps: self.opt.steps,
            state,
        })
    }

    /// Checks `s` against this scorer (names, shapes, optimizer) and copies it in.
    fn restore(&mut self, s: Stored) -> std::result::Result<(), String> {
        if s.scorer != self.name {
            return Err(format!(
                "saved by scorer '{}', cannot be loaded into '{}'",
                s.scorer, self.name
            ));
        }
        let mut vars = self.variables_sorted();
        if vars.len() != s.vars.len() {
            return Err(format!(
                "{} variables saved, this network has {}; was it saved with other sizes or options?",
                s.vars.len(),
                vars.len()
            ));
        }
        for ((name, t), v) in vars.iter().zip(&s.vars) {
            let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
            if *name != v.name || shape != v.shape || t.requires_grad() != v.trainable {
                return Err(format!(
                    "variable '{}' {:?} saved, this network has '{name}' {shape:?}; was it saved with other sizes or options?",
                    v.name, v.shape
                ));
            }
        }
        let same_method = s.method == self.opt.method.code() && s.state.len() == self.params.len();
        if same_method {
            for ((p, slots), name) in self.params.iter().zip(&s.state).zip(&self.names) {
                if !(slots.is_empty() || slots.len() == self.opt.method.slots())
                    || slots.iter().any(|v| v.len() != p.numel())
                {
                    return Err(format!(
                        "optimizer state of '{name}' does not fit its shape"
                    ));
                }
            }
        }
        let (kind, device) = (self.kind, self.device);
        let e = |e: TchError| e.to_string();
        tch::no_grad(|| -> std::result::Result<(), String> {
            for ((_, t), v) in vars.iter_mut().zip(&s.vars) {
                t.f_copy_(&from_values(&v.data, &v.shape, kind, device).map_err(e)?)
                    .map_err(e)?;
            }
            Ok(())
        })?;
        if same_method {
            let mut state = Vec::with_capacity(s.state.len());
            for (p, slots) in self.params.iter().zip(&s.state) {
                let shape: Vec<usize> = p.size().iter().map(|&d| d as usize).collect();
                state.push(
                    slots
                        .iter()
                        .map(|v| from_values(v, &shape, kind, device))
                        .collect::<std::result::Result<Vec<_>, _>>()
                        .map_err(e)?,
                );
            }
            self.opt.state = state;
            self.opt.steps = s.steps;
        } else {
            // Saved with another optimizer: keep the weights, start this optimizer afresh.
            self.opt.reset();
        }
        self.output = None;
        Ok(())
    }
}

impl Scorer for TorchScorer {
    fn name(&self) -> &str {
        &self.name
    }

    fn output_shape(&self, input_shape: &[usize]) -> Result<Vec<usize>> {
        let out = self.arch.output_width();
        match self.arch.image() {
            None => match input_shape.last() {
                Some(&w) if w == self.arch.input_width() => {
                    let mut s = input_shape.to_vec();
                    *s.last_mut().unwrap_or(&mut 0) = out;
                    Ok(s)
                }
                _ => Err(self.input_error(input_shape)),
            },
            Some(i) => match input_shape {
                [n, d] if *d == i.numel() => Ok(vec![*n, out]),
                [n, c, h, w] if (*c, *h, *w) == (i.c, i.h, i.w) => Ok(vec![*n, out]),
                _ => Err(self.input_error(input_shape)),
            },
        }
    }

    fn forward(&mut self, x: ArrayViewD<'_, f64>, train: bool) -> Result<ArrayD<f64>> {
        let shape = self.output_shape(x.shape())?;
        self.output = None;
        let input = self.input_tensor(x)?;
        let y = if train {
            self.net.forward(&input, true)
        } else {
            tch::no_grad(|| self.net.forward(&input, false))
        }
        .map_err(self.err("forward"))?;
        let values = to_vec(&y).map_err(self.err("forward output"))?;
        let out = ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|_| {
            DlmError::shape(
                format!("{} output", self.name),
                format!("{shape:?}"),
                &y.size().iter().map(|&d| d as usize).collect::<Vec<_>>(),
            )
        })?;
        if train {
            self.output = Some(y);
        }
        Ok(out)
    }

    fn backward(&mut self, grad_out: ArrayViewD<'_, f64>) -> Result<()> {
        let Some(out) = self.output.take() else {
            return Err(DlmError::invalid(
                format!("{} backward", self.name),
                "no training forward to back-propagate through; call forward(x, train = true) first (once per backward)",
            ));
        };
        let shape: Vec<usize> = out.size().iter().map(|&d| d as usize).collect();
        if grad_out.shape() != shape.as_slice() {
            let got = grad_out.shape().to_vec();
            self.output = Some(out);
            return Err(DlmError::shape(
                format!("{} output gradient", self.name),
                format!("{shape:?} (the shape of the last forward's output)"),
                &got,
            ));
        }
        let g = grad_out.as_standard_layout();
        let e = self.err("backward");
        let g =
            from_values(g.as_slice().unwrap_or(&[]), &shape, self.kind, self.device).map_err(&e)?;
        out.f_mul(&g)
            .and_then(|l| l.f_sum(None::<Kind>))
            .and_then(|l| l.f_backward())
            .map_err(&e)
    }

    fn step(&mut self) -> Result<()> {
        let e = self.err("optimizer step");
        self.opt.step(&mut self.params).map_err(e)?;
        self.zero_grad();
        Ok(())
    }

    fn zero_grad(&mut self) {
        for p in &self.params {
            if let Ok(mut g) = p.f_grad() {
                if g.defined() {
                    let _ = g.f_zero_();
                }
            }
        }
    }

    fn num_params(&self) -> usize {
        self.params.iter().map(Tensor::numel).sum()
    }

    /// All parameters as f64 (empty if libtorch fails to copy them, which it does not).
    fn params(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.num_params());
        for p in &self.params {
            match to_vec(p) {
                Ok(v) => out.extend(v),
                Err(_) => return Vec::new(),
            }
        }
        out
    }

    fn set_params(&mut self, params: &[f64]) -> Result<()> {
        let n = self.num_params();
        if params.len() != n {
            return Err(DlmError::shape(
                format!("{} parameters", self.name),
                format!("[{n}]"),
                &[params.len()],
            ));
        }
        let (kind, device) = (self.kind, self.device);
        let e = self.err("set_params");
        let mut at = 0;
        tch::no_grad(|| {
            for p in self.params.iter_mut() {
                let k = p.numel();
                let shape: Vec<usize> = p.size().iter().map(|&d| d as usize).collect();
                p.f_copy_(&from_values(&params[at..at + k], &shape, kind, device)?)?;
                at += k;
            }
            Ok(())
        })
        .map_err(e)
    }

    /// Accumulated gradients as f64 (zeros where none; empty if libtorch fails to copy them).
    fn grads(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.num_params());
        for p in &self.params {
            let g = match p.f_grad() {
                Ok(g) if g.defined() => to_vec(&g),
                Ok(_) => Ok(vec![0.0; p.numel()]),
                Err(e) => Err(e),
            };
            match g {
                Ok(v) => out.extend(v),
                Err(_) => return Vec::new(),
            }
        }
        out
    }

    fn save(&self, w: &mut dyn Write) -> Result<()> {
        let bytes = self.stored().map_err(self.err("save"))?.to_bytes();
        w.write_all(&(bytes.len() as u64).to_le_bytes())
            .and_then(|_| w.write_all(&bytes))
            .map_err(|e| DlmError::io("writing", format!("{} weights", self.name), e))
    }

    fn load(&mut self, r: &mut dyn Read) -> Result<()> {
        let what = format!("{} weights", self.name);
        let bad = |m: String| DlmError::format(what.clone(), "model file", m);
        let mut len = [0u8; 8];
        r.read_exact(&mut len)
            .map_err(|e| bad(format!("missing length header: {e}")))?;
        let len = u64::from_le_bytes(len);
        if len > (1 << 36) {
            return Err(bad(format!("implausible length {len}")));
        }
        let mut bytes = Vec::new();
        r.take(len)
            .read_to_end(&mut bytes)
            .map_err(|e| bad(format!("read error: {e}")))?;
        if bytes.len() as u64 != len {
            return Err(bad(format!("truncated: {} of {len} bytes", bytes.len())));
        }
        let stored = Stored::from_bytes(&bytes).map_err(&bad)?;
        self.restore(stored).map_err(bad)
    }

    fn device(&self) -> String {
        device_name(self.device)
    }

    /// Moves the weights and the optimizer state (the autograd graph of a pending training
    /// forward is dropped: run the forward again on the new device).
    fn to_device(&mut self, device: &str) -> Result<()> {
        let d = parse_device(device, &self.name)?;
        if d == self.device {
            return Ok(());
        }
        self.output = None;
        let e = self.err("to_device");
        let mut moved = Vec::with_capacity(self.opt.state.len());
        for slots in &self.opt.state {
            moved.push(
                slots
                    .iter()
                    .map(|t| t.f_to_device(d))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(&e)?,
            );
        }
        tch::no_grad(|| -> std::result::Result<(), TchError> {
            for (_, mut t) in self.vs.variables() {
                // The accumulated gradient moves too (as torch.nn.Module.to does), else the
                // next backward would accumulate across devices.
                let mut g = t.f_grad()?;
                if g.defined() {
                    let new = g.f_to_device(d)?;
                    g.f_set_data(&new)?;
                }
                let new = t.f_to_device(d)?;
                t.f_set_data(&new)?;
            }
            Ok(())
        })
        .map_err(&e)?;
        // Keep the VarStore's own record of its device in step (no data moves: done above).
        self.vs.set_device(d);
        self.opt.state = moved;
        self.device = d;
        Ok(())
    }
}

/// The scorers of this plugin: `(name, description)`.
pub const SCORERS: [(&str, &str); 5] = [
    (
        "torch-mlp",
        "libtorch MLP on the last axis; sizes=IN-H-..-OUT, hidden=relu|tanh|softplus|identity, out=identity|softplus|relu|tanh, opt=adam|sgd, lr, momentum, seed, device=cpu|cuda|cuda:N|auto, dtype=f32|f64",
    ),
    (
        "torch-lenet",
        "libtorch LeNet mu: Conv5x5(20) ReLU MaxPool2, Conv5x5(50) ReLU MaxPool2, FC emb(500) ReLU; input=1x28x28 (images flattened [N, C*H*W]), emb, opt, lr, momentum, seed, device, dtype",
    ),
    (
        "torch-resnet18",
        "libtorch CIFAR ResNet-18 (3x3 stem) with global average pooling; input=3x32x32|1x28x28, width=64 (base channels), emb=8*width (else a final linear map), opt, lr, momentum, seed, device, dtype",
    ),
    (
        "torch-sigma-mnist",
        "libtorch sigma net: Conv5x5(20) ReLU MaxPool2, Conv5x5(50) ReLU MaxPool2, FC 500 ReLU, FC 1 Softplus; input=1x28x28, opt, lr, momentum, seed, device, dtype",
    ),
    (
        "torch-sigma-cifar",
        "libtorch sigma net: Conv5x5(20) ReLU MaxPool2, FC 1 Softplus; input=3x32x32, opt, lr, momentum, seed, device, dtype",
    ),
];

/// Registers the scorers listed in [`SCORERS`].
pub fn register(r: &mut Registrar<'_>) -> Result<()> {
    for (name, description) in SCORERS {
        r.scorer(name, description, move |c: &Config| {
            TorchScorer::from_config(name, c)
        })?;
    }
    Ok(())
}

dlm_core::export_plugin!(register);
