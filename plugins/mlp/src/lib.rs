//! # dlm-plugin-mlp
//!
//! A native multi-layer perceptron [`Scorer`] (`mlp`): dense layers on `ndarray`, a hand-written
//! backward pass (checked against finite differences), and PyTorch-compatible Adam and SGD.
//! Networks of the sorting experiment are this small, and without a tensor framework they
//! train orders of magnitude faster per step.
//!
//! The network applies to the **last axis** of its input; all leading axes are rows. So the
//! sorting experiment's `mu` is `mlp:sizes=1-32-d` on input `[B, d, 1]` (output `[B, d, d]`)
//! and its `sigma` is `mlp:sizes=d-1,out=softplus` on input `[B, d]` (output `[B, 1]`).
//!
//! Options: `sizes=IN-H1-...-OUT` (required), `hidden=relu|tanh|softplus|identity` (relu),
//! `out=identity|softplus|relu|tanh` (identity), `opt=adam|sgd` (adam), `lr=` (1e-3),
//! `momentum=` (0, SGD only), `seed=` (0, initialisation), `init=default|identity`
//! (`identity`: start as the identity map, see [`init_identity`]), `init_noise=` (0.01).

pub mod net;

use dlm_core::plugin::Registrar;
use dlm_core::{Config, DlmError, Result, Scorer};
use ndarray::{ArrayD, ArrayViewD};
use net::{Activation, Mlp, Optimizer};
use std::io::{Read, Write};

/// Re-initialises every layer to a rectangular identity (`W[i][i] = 1`, zero bias) plus
/// uniform noise of half-width `noise` (which keeps extra hidden units alive). With ReLU hidden
/// layers and non-negative inputs (pixels) the network then starts as the identity map, so a
/// k-NN embedding starts from pixel k-NN and DLM training refines the metric from there.
pub fn init_identity(net: &mut Mlp, noise: f64, seed: u64) -> Result<()> {
    let sizes = net.sizes().to_vec();
    let mut state = seed ^ 0x1D_E17;
    let mut uniform = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let mut p = Vec::with_capacity(net.num_params());
    for w in sizes.windows(2) {
        let (fan_in, fan_out) = (w[0], w[1]);
        for i in 0..fan_in {
            for j in 0..fan_out {
                p.push(if i == j { 1.0 } else { 0.0 } + noise * uniform());
            }
        }
        p.extend(std::iter::repeat_n(0.0, fan_out));
    }
    net.set_params(&p).map_err(err)
}

/// Scales the last layer's initial weights by `weight_scale` and, when given, sets its biases to
/// `bias` (the options `out_init_scale` and `bias_init`). With `weight_scale = 0` and
/// `bias = softplus^-1(v)` an `out=softplus` network outputs exactly `v` for every input at the
/// start (how `dlm train --sigma-init V` starts a learned noise scale at V); the weights still
/// get gradients (`g * x`), so the network can learn to depend on the input.
pub fn init_output_layer(net: &mut Mlp, weight_scale: f64, bias: Option<f64>) -> Result<()> {
    if weight_scale == 1.0 && bias.is_none() {
        return Ok(());
    }
    let sizes = net.sizes().to_vec();
    let (fan_in, fan_out) = (sizes[sizes.len() - 2], sizes[sizes.len() - 1]);
    let mut p = net.params();
    let end = p.len();
    let (w, b) = p[end - fan_out * (fan_in + 1)..].split_at_mut(fan_in * fan_out);
    w.iter_mut().for_each(|v| *v *= weight_scale);
    if let Some(bias) = bias {
        b.iter_mut().for_each(|v| *v = bias);
    }
    net.set_params(&p).map_err(err)
}

/// The `mlp` scorer.
#[derive(Debug, Clone)]
pub struct MlpScorer {
    net: Mlp,
}

fn activation(c: &Config, key: &str, default: &'static str) -> Result<Activation> {
    Ok(
        match c.choice(key, default, &["relu", "tanh", "softplus", "identity"])? {
            "relu" => Activation::Relu,
            "tanh" => Activation::Tanh,
            "softplus" => Activation::Softplus,
            _ => Activation::Identity,
        },
    )
}

fn err(e: String) -> DlmError {
    DlmError::invalid("mlp", e)
}

impl MlpScorer {
    /// Wraps a network.
    pub fn new(net: Mlp) -> Self {
        MlpScorer { net }
    }

    /// The network.
    pub fn net(&self) -> &Mlp {
        &self.net
    }

    /// From the options listed in the crate docs.
    pub fn from_config(c: &Config) -> Result<Self> {
        let sizes_raw = c
            .raw("sizes")
            .ok_or_else(|| DlmError::invalid("mlp:sizes", "required, e.g. mlp:sizes=1-32-10"))?;
        let sizes = sizes_raw
            .split('-')
            .map(|s| s.trim().parse::<usize>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| {
                DlmError::invalid(
                    "mlp:sizes",
                    format!("'{sizes_raw}' is not a dash-separated list of widths, e.g. 1-32-10"),
                )
            })?;
        let hidden = activation(c, "hidden", "relu")?;
        let output = activation(c, "out", "identity")?;
        let lr = c.f64("lr", 1e-3)?;
        let opt = match c.choice("opt", "adam", &["adam", "sgd"])? {
            "adam" => Optimizer::adam(lr),
            _ => Optimizer::Sgd {
                lr,
                momentum: c.f64("momentum", 0.0)?,
            },
        };
        let seed = c.u64("seed", 0)?;
        let mut net = Mlp::new(&sizes, hidden, output, opt, seed).map_err(err)?;
        if c.choice("init", "default", &["default", "identity"])? == "identity" {
            init_identity(&mut net, c.f64("init_noise", 0.01)?, seed)?;
        }
        let out_init_scale = c.f64("out_init_scale", 1.0)?;
        let bias_init = c
            .raw("bias_init")
            .is_some()
            .then(|| c.f64("bias_init", 0.0))
            .transpose()?;
        init_output_layer(&mut net, out_init_scale, bias_init)?;
        Ok(MlpScorer::new(net))
    }
}

impl Scorer for MlpScorer {
    fn name(&self) -> &str {
        "mlp"
    }
    fn output_shape(&self, input_shape: &[usize]) -> Result<Vec<usize>> {
        match input_shape.last() {
            Some(&w) if w == self.net.input_width() => {
                let mut s = input_shape.to_vec();
                *s.last_mut().expect("non-empty") = self.net.output_width();
                Ok(s)
            }
            _ => Err(DlmError::shape(
                "mlp input",
                format!("[..., {}]", self.net.input_width()),
                input_shape,
            )),
        }
    }
    fn forward(&mut self, x: ArrayViewD<'_, f64>, train: bool) -> Result<ArrayD<f64>> {
        if train {
            self.net.forward(x).map_err(err)
        } else {
            self.net.predict(x).map_err(err)
        }
    }
    fn backward(&mut self, grad_out: ArrayViewD<'_, f64>) -> Result<()> {
        self.net.backward(grad_out).map_err(err)
    }
    fn step(&mut self) -> Result<()> {
        self.net.step();
        Ok(())
    }
    fn zero_grad(&mut self) {
        self.net.zero_grad()
    }
    fn num_params(&self) -> usize {
        self.net.num_params()
    }
    fn params(&self) -> Vec<f64> {
        self.net.params()
    }
    fn set_params(&mut self, params: &[f64]) -> Result<()> {
        self.net.set_params(params).map_err(err)
    }
    fn grads(&self) -> Vec<f64> {
        self.net.grads()
    }
    fn save(&self, w: &mut dyn Write) -> Result<()> {
        let bytes = self.net.to_bytes();
        w.write_all(&(bytes.len() as u64).to_le_bytes())
            .and_then(|_| w.write_all(&bytes))
            .map_err(|e| DlmError::io("writing", "mlp weights", e))
    }
    fn load(&mut self, r: &mut dyn Read) -> Result<()> {
        let bad = |m: String| DlmError::format("mlp weights", "model file", m);
        let mut len = [0u8; 8];
        r.read_exact(&mut len)
            .map_err(|e| bad(format!("missing length header: {e}")))?;
        let len = u64::from_le_bytes(len);
        if len > (1 << 34) {
            return Err(bad(format!("implausible length {len}")));
        }
        // Read through `take` so that a corrupt length cannot make us allocate it up front.
        let mut bytes = Vec::new();
        r.take(len)
            .read_to_end(&mut bytes)
            .map_err(|e| bad(format!("unreadable ({e})")))?;
        if bytes.len() as u64 != len {
            return Err(bad(format!("truncated: {} of {len} bytes", bytes.len())));
        }
        let net = Mlp::from_bytes(&bytes).map_err(bad)?;
        if net.sizes() != self.net.sizes() {
            return Err(bad(format!(
                "layer sizes {:?} differ from this scorer's {:?}",
                net.sizes(),
                self.net.sizes()
            )));
        }
        self.net = net;
        Ok(())
    }
}

/// Registers `mlp`.
pub fn register(r: &mut Registrar<'_>) -> Result<()> {
    r.scorer(
        "mlp",
        "native MLP on the last axis; options sizes=IN-H-..-OUT, hidden=relu, out=identity|softplus, opt=adam|sgd, lr, momentum, seed, init=default|identity, out_init_scale (scales the last layer's initial weights), bias_init (its initial biases)",
        MlpScorer::from_config,
    )
}

dlm_core::export_plugin!(register);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bias_init_with_zero_output_weights_gives_a_constant_that_can_learn() {
        let v: f64 = 0.3;
        let b = v + (-(-v).exp()).ln_1p(); // softplus^-1(0.3)
        let spec =
            format!("mlp:sizes=4-1,out=softplus,opt=sgd,lr=0.1,out_init_scale=0,bias_init={b}");
        let mut s =
            MlpScorer::from_config(&spec.parse::<dlm_core::Spec>().unwrap().config()).unwrap();
        let x = ndarray::Array2::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as f64).into_dyn();
        let y = s.forward(x.view(), true).unwrap();
        assert!(y.iter().all(|&o| (o - v).abs() < 1e-12), "{y:?}");
        s.backward(ndarray::Array2::from_elem((3, 1), 1.0).into_dyn().view())
            .unwrap();
        assert!(s.grads().iter().any(|&g| g != 0.0));
        s.step().unwrap();
        let y2 = s.forward(x.view(), false).unwrap();
        assert!(y2[[2, 0]] != y2[[0, 0]], "the weights moved: {y2:?}");
        // Without the options the random weights make the output depend on the input.
        let spec = "mlp:sizes=4-1,out=softplus"
            .parse::<dlm_core::Spec>()
            .unwrap();
        let mut d = MlpScorer::from_config(&spec.config()).unwrap();
        let y = d.forward(x.view(), false).unwrap();
        assert!(y[[0, 0]] != y[[2, 0]]);
    }

    #[test]
    fn a_corrupt_length_is_an_error_not_a_huge_allocation() {
        let cfg = dlm_core::Spec::named("mlp").with("sizes", "2-3-1").config();
        let mut s = MlpScorer::from_config(&cfg).unwrap();
        let mut bytes = Vec::new();
        s.save(&mut bytes).unwrap();
        // Claim 2^40 bytes of weights but provide the real ones only.
        bytes[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        let err = s.load(&mut bytes.as_slice()).unwrap_err();
        assert!(
            err.to_string().contains("implausible") || err.to_string().contains("truncated"),
            "{err}"
        );
        // A length just past the data is reported as truncated.
        let mut ok = Vec::new();
        s.save(&mut ok).unwrap();
        let len = u64::from_le_bytes(ok[..8].try_into().unwrap());
        ok[..8].copy_from_slice(&(len + 5).to_le_bytes());
        let err = s.load(&mut ok.as_slice()).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}
