//! A tiny native multi-layer perceptron with a hand-written backward pass and
//! PyTorch-compatible SGD / Adam optimizers.
//!
//! The network applies to the **last axis** of an input of any rank >= 1: all
//! leading axes are flattened into rows, and the output keeps the leading axes
//! with the last axis replaced by the output width. For example the `mu`
//! network of the sorting experiment maps `[B, d, 1] -> [B, d, d]` with sizes
//! `[1, 32, d]`, and the `sigma` network maps `[B, d] -> [B, 1]` with sizes
//! `[d, 1]` and a softplus output.
//!
//! Parameters are `f64`. Layer `l` holds `W_l` with shape `[in, out]` and `b_l`
//! with shape `[out]`, and computes `act(x · W_l + b_l)`.
//!
//! The flat parameter order used by [`Mlp::params`], [`Mlp::grads`],
//! [`Mlp::set_params`] and the serialised form is: for each layer in order,
//! `W` in row-major order (`in` rows of `out` values), then `b`.

use dlm_core::linalg::{par_gemm, par_map_inplace, par_zip_for_each, ELEMENT_CHUNK};
use ndarray::{Array, Array1, Array2, ArrayD, ArrayViewD, Dimension, IxDyn, Zip};
use rayon::prelude::*;

/// Magic header of the binary serialisation produced by [`Mlp::to_bytes`].
pub const MAGIC: &[u8; 8] = b"DLMMLP01";

/// Most parameters a network may have (2^27, 1 GiB per copy of the parameters), checked
/// before anything is allocated, whether the sizes come from options or a weights file.
pub const MAX_PARAMS: usize = 1 << 27;

/// Softplus switches to the identity above this input (PyTorch default, beta 1).
const SOFTPLUS_THRESHOLD: f64 = 20.0;

/// Element-wise activation applied after a linear layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    /// `f(z) = z`.
    Identity,
    /// `f(z) = max(z, 0)`; derivative 0 at `z = 0` (as PyTorch).
    Relu,
    /// `f(z) = ln(1 + e^z)` for `z <= 20`, `z` above (PyTorch, beta 1, threshold 20).
    Softplus,
    /// `f(z) = tanh(z)`.
    Tanh,
}

impl Activation {
    /// Applies the activation to a pre-activation `z`.
    #[inline]
    pub fn apply(self, z: f64) -> f64 {
        match self {
            Activation::Identity => z,
            Activation::Relu => {
                if z > 0.0 {
                    z
                } else {
                    0.0
                }
            }
            Activation::Softplus => {
                if z > SOFTPLUS_THRESHOLD {
                    z
                } else {
                    z.exp().ln_1p()
                }
            }
            Activation::Tanh => z.tanh(),
        }
    }

    /// Derivative `f'(z)`, given the pre-activation `z` and the activation `a = f(z)`.
    #[inline]
    pub fn derivative(self, z: f64, a: f64) -> f64 {
        match self {
            Activation::Identity => 1.0,
            Activation::Relu => {
                if z > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::Softplus => {
                if z > SOFTPLUS_THRESHOLD {
                    1.0
                } else {
                    let e = z.exp();
                    e / (e + 1.0)
                }
            }
            Activation::Tanh => 1.0 - a * a,
        }
    }

    fn code(self) -> u8 {
        match self {
            Activation::Identity => 0,
            Activation::Relu => 1,
            Activation::Softplus => 2,
            Activation::Tanh => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Activation::Identity),
            1 => Some(Activation::Relu),
            2 => Some(Activation::Softplus),
            3 => Some(Activation::Tanh),
            _ => None,
        }
    }
}

/// Optimizer and its hyper-parameters (semantics of `torch.optim.SGD` / `torch.optim.Adam`,
/// without weight decay, dampening, Nesterov or AMSGrad).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optimizer {
    /// Stochastic gradient descent with optional heavy-ball momentum.
    Sgd {
        /// Learning rate (>= 0, finite).
        lr: f64,
        /// Momentum factor (>= 0, finite); 0 disables momentum.
        momentum: f64,
    },
    /// Adam with bias correction.
    Adam {
        /// Learning rate (>= 0, finite).
        lr: f64,
        /// Exponential decay of the first moment, in `[0, 1)`.
        beta1: f64,
        /// Exponential decay of the second moment, in `[0, 1)`.
        beta2: f64,
        /// Added to the square root of the bias-corrected second moment (>= 0, finite).
        eps: f64,
    },
}

impl Optimizer {
    /// Plain SGD (no momentum) with learning rate `lr`.
    pub fn sgd(lr: f64) -> Self {
        Optimizer::Sgd { lr, momentum: 0.0 }
    }

    /// Adam with PyTorch's defaults (`beta1 = 0.9`, `beta2 = 0.999`, `eps = 1e-8`).
    pub fn adam(lr: f64) -> Self {
        Optimizer::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// The learning rate.
    pub fn lr(&self) -> f64 {
        match *self {
            Optimizer::Sgd { lr, .. } | Optimizer::Adam { lr, .. } => lr,
        }
    }

    /// Checks the hyper-parameters; `Err` with a message naming the bad value.
    pub fn validate(&self) -> Result<(), String> {
        fn non_negative(name: &str, v: f64) -> Result<(), String> {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(format!("optimizer {name} must be finite and >= 0, got {v}"))
            }
        }
        fn unit(name: &str, v: f64) -> Result<(), String> {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("optimizer {name} must be in [0, 1), got {v}"))
            }
        }
        match *self {
            Optimizer::Sgd { lr, momentum } => {
                non_negative("lr", lr)?;
                non_negative("momentum", momentum)
            }
            Optimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
            } => {
                non_negative("lr", lr)?;
                unit("beta1", beta1)?;
                unit("beta2", beta2)?;
                non_negative("eps", eps)
            }
        }
    }

    /// Number of per-parameter state tensors (SGD: momentum buffer; Adam: two moments).
    fn state_count(&self) -> usize {
        match self {
            Optimizer::Sgd { .. } => 1,
            Optimizer::Adam { .. } => 2,
        }
    }
}

/// A set of per-layer tensors shaped like the parameters.
#[derive(Debug, Clone, PartialEq)]
struct Tensors {
    w: Vec<Array2<f64>>,
    b: Vec<Array1<f64>>,
}

impl Tensors {
    fn zeros(sizes: &[usize]) -> Self {
        let w = sizes
            .windows(2)
            .map(|s| Array2::zeros((s[0], s[1])))
            .collect();
        let b = sizes[1..].iter().map(|&n| Array1::zeros(n)).collect();
        Tensors { w, b }
    }

    fn extend_into(&self, out: &mut Vec<f64>) {
        for (w, b) in self.w.iter().zip(&self.b) {
            out.extend(w.iter().copied());
            out.extend(b.iter().copied());
        }
    }

    /// Copies `p` in the flat parameter order; `p.len()` must equal the parameter count.
    fn copy_from(&mut self, p: &[f64]) {
        let mut src = p.iter().copied();
        for (w, b) in self.w.iter_mut().zip(self.b.iter_mut()) {
            for (dst, v) in w.iter_mut().chain(b.iter_mut()).zip(&mut src) {
                *dst = v;
            }
        }
    }

    fn fill(&mut self, v: f64) {
        for w in &mut self.w {
            w.fill(v);
        }
        for b in &mut self.b {
            b.fill(v);
        }
    }
}

/// The per-step update rule with its step-dependent coefficients precomputed.
#[derive(Clone, Copy)]
enum Rule {
    Sgd {
        lr: f64,
        momentum: f64,
        first: bool,
    },
    Adam {
        one_minus_beta1: f64,
        beta2: f64,
        step_size: f64,
        bc2_sqrt: f64,
        eps: f64,
    },
}

/// `torch.lerp(start, end, weight)` as computed by PyTorch's CPU kernel.
#[inline]
fn lerp(start: f64, end: f64, weight: f64) -> f64 {
    if weight.abs() < 0.5 {
        start + weight * (end - start)
    } else {
        end - (end - start) * (1.0 - weight)
    }
}

fn apply_rule<D: Dimension>(
    p: &mut Array<f64, D>,
    g: &Array<f64, D>,
    s1: &mut Array<f64, D>,
    s2: &mut Array<f64, D>,
    rule: Rule,
) {
    // The optimizer's tensors are owned arrays in standard layout; large ones are updated in
    // parallel chunks (the same arithmetic per entry, so the same result on any pool).
    match (
        p.as_slice_mut(),
        g.as_slice(),
        s1.as_slice_mut(),
        s2.as_slice_mut(),
    ) {
        (Some(p), Some(g), Some(s1), Some(s2)) => {
            if p.len() <= ELEMENT_CHUNK {
                apply_rule_slices(p, g, s1, s2, rule);
            } else {
                p.par_chunks_mut(ELEMENT_CHUNK)
                    .zip(g.par_chunks(ELEMENT_CHUNK))
                    .zip(s1.par_chunks_mut(ELEMENT_CHUNK))
                    .zip(s2.par_chunks_mut(ELEMENT_CHUNK))
                    .for_each(|(((p, g), s1), s2)| apply_rule_slices(p, g, s1, s2, rule));
            }
        }
        _ => unreachable!("optimizer tensors are contiguous"),
    }
}

fn apply_rule_slices(p: &mut [f64], g: &[f64], s1: &mut [f64], s2: &mut [f64], rule: Rule) {
    match rule {
        Rule::Sgd {
            lr,
            momentum,
            first,
        } => {
            if momentum == 0.0 {
                p.iter_mut().zip(g).for_each(|(p, &g)| *p -= lr * g);
            } else {
                p.iter_mut().zip(g).zip(s1).for_each(|((p, &g), buf)| {
                    *buf = if first { g } else { momentum * *buf + g };
                    *p -= lr * *buf;
                });
            }
        }
        Rule::Adam {
            one_minus_beta1,
            beta2,
            step_size,
            bc2_sqrt,
            eps,
        } => {
            p.iter_mut()
                .zip(g)
                .zip(s1)
                .zip(s2)
                .for_each(|(((p, &g), m), v)| {
                    *m = lerp(*m, g, one_minus_beta1);
                    *v = *v * beta2 + (1.0 - beta2) * g * g;
                    let denom = v.sqrt() / bc2_sqrt + eps;
                    *p += -step_size * (*m / denom);
                });
        }
    }
}

/// Buffers kept between `forward` and `backward` (reused across calls when shapes match).
#[derive(Debug, Clone, Default)]
struct Cache {
    /// Whether `acts`/`pre` hold the last `forward` for the current parameters.
    valid: bool,
    /// Leading shape (all axes but the last) of the last forward input.
    lead: Vec<usize>,
    /// `acts[0]` is the input `[rows, in]`; `acts[l + 1]` the output of layer `l`.
    acts: Vec<Array2<f64>>,
    /// Pre-activations of each layer, `[rows, out_l]` (left untouched for identity layers,
    /// whose pre-activation is `acts[l + 1]`).
    pre: Vec<Array2<f64>>,
    /// Backward scratch: dLoss/dpre of each layer.
    delta: Vec<Array2<f64>>,
}

/// Resizes `buf` to `(rows, cols)` (reallocating only if the shape differs).
fn ensure_shape(buf: &mut Array2<f64>, rows: usize, cols: usize) {
    if buf.dim() != (rows, cols) {
        *buf = Array2::zeros((rows, cols));
    }
}

/// splitmix64: a tiny, well-mixed, seedable PRNG (used for weight initialisation).
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        dlm_core::rng::splitmix64(&mut self.0)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[-bound, bound)`.
    fn uniform(&mut self, bound: f64) -> f64 {
        bound * (2.0 * self.next_f64() - 1.0)
    }
}

/// A fully-connected network applied to the last axis of its input.
#[derive(Debug, Clone)]
pub struct Mlp {
    sizes: Vec<usize>,
    hidden: Activation,
    output: Activation,
    optimizer: Optimizer,
    /// Number of optimizer steps taken (PyTorch's `step`).
    steps: u64,
    params: Tensors,
    grads: Tensors,
    /// SGD momentum buffer, or Adam first moment.
    state1: Tensors,
    /// Adam second moment (unused by SGD).
    state2: Tensors,
    cache: Cache,
}

fn count_params(sizes: &[usize]) -> Option<usize> {
    sizes.windows(2).try_fold(0usize, |acc, s| {
        let layer = s[0].checked_add(1)?.checked_mul(s[1])?;
        acc.checked_add(layer)
    })
}

fn validate_sizes(sizes: &[usize]) -> Result<usize, String> {
    if sizes.len() < 2 {
        return Err(format!(
            "Mlp sizes must list at least an input and an output width, got {sizes:?}"
        ));
    }
    if let Some(i) = sizes.iter().position(|&s| s == 0) {
        return Err(format!(
            "Mlp sizes must all be >= 1, got 0 at position {i} in {sizes:?}"
        ));
    }
    let n = count_params(sizes)
        .ok_or_else(|| format!("Mlp sizes {sizes:?}: parameter count overflows"))?;
    if n > MAX_PARAMS {
        return Err(format!(
            "Mlp sizes {sizes:?}: {n} parameters, above the limit of {MAX_PARAMS} (each copy of \
             the parameters takes 8 bytes per parameter and training keeps four: parameters, \
             gradients and two optimizer states, so 4 GiB at the limit)"
        ));
    }
    Ok(n)
}

impl Mlp {
    /// Builds a network with `sizes = [in, h1, ..., out]`; `hidden` is applied after every layer
    /// but the last, `output` after the last.
    ///
    /// Weights and biases are drawn like PyTorch's `nn.Linear` default,
    /// `U(-1/sqrt(in), 1/sqrt(in))`, from a splitmix64 generator seeded with `seed`
    /// (reproducible; layer by layer, `W` row-major then `b`).
    ///
    /// Errors if fewer than two sizes are given, a size is 0, or the optimizer's
    /// hyper-parameters are invalid.
    pub fn new(
        sizes: &[usize],
        hidden: Activation,
        output: Activation,
        optimizer: Optimizer,
        seed: u64,
    ) -> Result<Self, String> {
        validate_sizes(sizes)?;
        optimizer.validate()?;
        let mut params = Tensors::zeros(sizes);
        let mut rng = SplitMix64(seed);
        for (w, b) in params.w.iter_mut().zip(params.b.iter_mut()) {
            let bound = 1.0 / (w.nrows() as f64).sqrt();
            w.mapv_inplace(|_| rng.uniform(bound));
            b.mapv_inplace(|_| rng.uniform(bound));
        }
        Ok(Self::from_parts(
            sizes.to_vec(),
            hidden,
            output,
            optimizer,
            params,
        ))
    }

    fn from_parts(
        sizes: Vec<usize>,
        hidden: Activation,
        output: Activation,
        optimizer: Optimizer,
        params: Tensors,
    ) -> Self {
        let zeros = Tensors::zeros(&sizes);
        Mlp {
            hidden,
            output,
            optimizer,
            steps: 0,
            grads: zeros.clone(),
            state1: zeros.clone(),
            state2: zeros,
            params,
            sizes,
            cache: Cache::default(),
        }
    }

    /// Width of the input's last axis.
    pub fn input_width(&self) -> usize {
        self.sizes[0]
    }

    /// Width of the output's last axis.
    pub fn output_width(&self) -> usize {
        self.sizes[self.sizes.len() - 1]
    }

    /// Layer widths `[in, h1, ..., out]`.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// Activation after the hidden layers.
    pub fn hidden_activation(&self) -> Activation {
        self.hidden
    }

    /// Activation after the last layer.
    pub fn output_activation(&self) -> Activation {
        self.output
    }

    /// The optimizer and its current hyper-parameters.
    pub fn optimizer(&self) -> Optimizer {
        self.optimizer
    }

    /// Number of optimizer steps taken so far.
    pub fn step_count(&self) -> u64 {
        self.steps
    }

    fn num_layers(&self) -> usize {
        self.sizes.len() - 1
    }

    fn activation(&self, layer: usize) -> Activation {
        if layer + 1 == self.num_layers() {
            self.output
        } else {
            self.hidden
        }
    }

    /// Checks `x` and returns its leading shape and row count.
    fn check_input(
        &self,
        what: &str,
        x: &ArrayViewD<'_, f64>,
    ) -> Result<(Vec<usize>, usize), String> {
        let shape = x.shape();
        let Some((&last, lead)) = shape.split_last() else {
            return Err(format!(
                "Mlp::{what}: input must have rank >= 1 (last axis = {} features), got a scalar",
                self.input_width()
            ));
        };
        if last != self.input_width() {
            return Err(format!(
                "Mlp::{what}: input shape {shape:?} has last axis {last}, expected {}",
                self.input_width()
            ));
        }
        let rows = lead
            .iter()
            .try_fold(1usize, |acc, &n| acc.checked_mul(n))
            .ok_or_else(|| format!("Mlp::{what}: input shape {shape:?} is too large"))?;
        Ok((lead.to_vec(), rows))
    }

    fn output_shape(&self, lead: &[usize]) -> IxDyn {
        let mut shape = lead.to_vec();
        shape.push(self.output_width());
        IxDyn(&shape)
    }

    /// Forward pass; caches what [`Mlp::backward`] needs.
    ///
    /// `x` may have any rank >= 1; its last axis must equal [`Mlp::input_width`]. The output has
    /// the same leading axes and last axis [`Mlp::output_width`].
    pub fn forward(&mut self, x: ArrayViewD<'_, f64>) -> Result<ArrayD<f64>, String> {
        let (lead, rows) = self.check_input("forward", &x)?;
        let layers = self.num_layers();
        let x2 = x
            .to_shape((rows, self.input_width()))
            .map_err(|e| format!("Mlp::forward: cannot view input as rows: {e}"))?;

        let cache = &mut self.cache;
        cache.valid = false;
        cache.acts.resize_with(layers + 1, Default::default);
        cache.pre.resize_with(layers, Default::default);
        ensure_shape(&mut cache.acts[0], rows, self.sizes[0]);
        match (cache.acts[0].as_slice_mut(), x2.as_slice()) {
            (Some(dst), Some(src)) => par_zip_for_each(dst, src, |o, x| *o = x),
            _ => cache.acts[0].assign(&x2),
        }

        for l in 0..layers {
            let act = if l + 1 == layers {
                self.output
            } else {
                self.hidden
            };
            let width = self.sizes[l + 1];
            let (done, rest) = cache.acts.split_at_mut(l + 1);
            let a_in = &done[l];
            let a_out = &mut rest[0];
            ensure_shape(a_out, rows, width);
            if act == Activation::Identity {
                // No derivative needed: write straight into the activation (pre[l] unused).
                a_out.assign(&self.params.b[l]);
                par_gemm(
                    1.0,
                    &a_in.view(),
                    &self.params.w[l].view(),
                    1.0,
                    &mut a_out.view_mut(),
                );
            } else {
                let z = &mut cache.pre[l];
                ensure_shape(z, rows, width);
                z.assign(&self.params.b[l]);
                par_gemm(
                    1.0,
                    &a_in.view(),
                    &self.params.w[l].view(),
                    1.0,
                    &mut z.view_mut(),
                );
                let (a, z) = (
                    a_out.as_slice_mut().expect("owned"),
                    z.as_slice().expect("owned"),
                );
                par_zip_for_each(a, z, |a, z| *a = act.apply(z));
            }
        }
        let shape = self.output_shape(&lead);
        let cache = &mut self.cache;
        cache.lead = lead;
        cache.valid = true;
        // Backward needs the output itself only for its activation's derivative.
        let out = if self.output == Activation::Identity {
            std::mem::take(&mut cache.acts[layers])
        } else {
            cache.acts[layers].clone()
        };
        out.into_shape_with_order(shape)
            .map_err(|e| format!("Mlp::forward: cannot reshape output: {e}"))
    }

    /// Forward pass without caching (inference); same shapes as [`Mlp::forward`].
    pub fn predict(&self, x: ArrayViewD<'_, f64>) -> Result<ArrayD<f64>, String> {
        let (lead, rows) = self.check_input("predict", &x)?;
        let x2 = x
            .to_shape((rows, self.input_width()))
            .map_err(|e| format!("Mlp::predict: cannot view input as rows: {e}"))?;
        let mut a: Option<Array2<f64>> = None;
        for l in 0..self.num_layers() {
            let act = self.activation(l);
            let mut z = Array2::zeros((rows, self.sizes[l + 1]));
            z.assign(&self.params.b[l]);
            let w = self.params.w[l].view();
            match &a {
                Some(prev) => par_gemm(1.0, &prev.view(), &w, 1.0, &mut z.view_mut()),
                None => par_gemm(1.0, &x2.view(), &w, 1.0, &mut z.view_mut()),
            }
            if act != Activation::Identity {
                par_map_inplace(z.as_slice_mut().expect("owned"), |v| act.apply(v));
            }
            a = Some(z);
        }
        let out = a.unwrap_or_default();
        out.into_shape_with_order(self.output_shape(&lead))
            .map_err(|e| format!("Mlp::predict: cannot reshape output: {e}"))
    }

    /// Accumulates parameter gradients (adds to the existing ones) given `grad_out` =
    /// dLoss/dOutput of the last [`Mlp::forward`], which must have exactly that output's shape.
    ///
    /// Errors if no forward pass is cached (none yet, or parameters changed since) or on a
    /// shape mismatch.
    pub fn backward(&mut self, grad_out: ArrayViewD<'_, f64>) -> Result<(), String> {
        if !self.cache.valid {
            return Err(
                "Mlp::backward: no cached forward pass for the current parameters; call forward first"
                    .to_string(),
            );
        }
        let expected = self.output_shape(&self.cache.lead);
        if grad_out.shape() != expected.slice() {
            return Err(format!(
                "Mlp::backward: grad_out shape {:?} does not match the last forward output shape {:?}",
                grad_out.shape(),
                expected.slice()
            ));
        }
        let layers = self.num_layers();
        let rows = self.cache.acts[0].nrows();
        let g2 = grad_out
            .to_shape((rows, self.output_width()))
            .map_err(|e| format!("Mlp::backward: cannot view grad_out as rows: {e}"))?;

        let cache = &mut self.cache;
        cache.delta.resize_with(layers, Default::default);
        let last = layers - 1;
        let out_act = self.output;
        // With an identity output, dLoss/dpre of the last layer is grad_out itself.
        let direct = out_act == Activation::Identity;
        if !direct {
            ensure_shape(&mut cache.delta[last], rows, self.sizes[layers]);
            Zip::from(&mut cache.delta[last])
                .and(&g2)
                .and(&cache.pre[last])
                .and(&cache.acts[layers])
                .for_each(|d, &g, &z, &a| *d = g * out_act.derivative(z, a));
        }

        for l in (0..layers).rev() {
            let (lower, upper) = cache.delta.split_at_mut(l);
            let delta = if l == last && direct {
                g2.view()
            } else {
                upper[0].view()
            };
            // dW += a_in^T · delta ; db += column sums of delta.
            par_gemm(
                1.0,
                &cache.acts[l].t(),
                &delta,
                1.0,
                &mut self.grads.w[l].view_mut(),
            );
            let gb = self.grads.b[l].as_slice_mut().expect("owned");
            match delta.as_slice() {
                // Row after row, as ndarray's row-wise `+=` (the same sums, without its
                // per-row overhead).
                Some(d) => {
                    for row in d.chunks_exact(gb.len()) {
                        for (g, &v) in gb.iter_mut().zip(row) {
                            *g += v;
                        }
                    }
                }
                None => {
                    for row in delta.rows() {
                        for (g, &v) in gb.iter_mut().zip(row) {
                            *g += v;
                        }
                    }
                }
            }
            if l > 0 {
                let prev = &mut lower[l - 1];
                ensure_shape(prev, rows, self.sizes[l]);
                par_gemm(
                    1.0,
                    &delta,
                    &self.params.w[l].t(),
                    0.0,
                    &mut prev.view_mut(),
                );
                let act = self.hidden;
                if act != Activation::Identity {
                    let d = prev.as_slice_mut().expect("owned");
                    let z = cache.pre[l - 1].as_slice().expect("owned");
                    let a = cache.acts[l].as_slice().expect("owned");
                    let f = |d: &mut [f64], z: &[f64], a: &[f64]| {
                        for ((d, &z), &a) in d.iter_mut().zip(z).zip(a) {
                            *d *= act.derivative(z, a);
                        }
                    };
                    if d.len() <= ELEMENT_CHUNK {
                        f(d, z, a);
                    } else {
                        d.par_chunks_mut(ELEMENT_CHUNK)
                            .zip(z.par_chunks(ELEMENT_CHUNK))
                            .zip(a.par_chunks(ELEMENT_CHUNK))
                            .for_each(|((d, z), a)| f(d, z, a));
                    }
                }
            }
        }
        Ok(())
    }

    /// Sets all accumulated gradients to zero.
    pub fn zero_grad(&mut self) {
        self.grads.fill(0.0);
    }

    /// One optimizer step using the accumulated gradients, then zeroes them.
    ///
    /// The cached forward pass is invalidated (its activations belong to the old parameters).
    pub fn step(&mut self) {
        self.steps = self.steps.saturating_add(1);
        let t = self.steps as f64;
        let rule = match self.optimizer {
            Optimizer::Sgd { lr, momentum } => Rule::Sgd {
                lr,
                momentum,
                first: self.steps == 1,
            },
            Optimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
            } => {
                let bc1 = 1.0 - beta1.powf(t);
                let bc2 = 1.0 - beta2.powf(t);
                Rule::Adam {
                    one_minus_beta1: 1.0 - beta1,
                    beta2,
                    step_size: lr / bc1,
                    bc2_sqrt: bc2.sqrt(),
                    eps,
                }
            }
        };
        let p = &mut self.params;
        let g = &self.grads;
        let (s1, s2) = (&mut self.state1, &mut self.state2);
        for l in 0..p.w.len() {
            apply_rule(&mut p.w[l], &g.w[l], &mut s1.w[l], &mut s2.w[l], rule);
            apply_rule(&mut p.b[l], &g.b[l], &mut s1.b[l], &mut s2.b[l], rule);
        }
        self.grads.fill(0.0);
        self.cache.valid = false;
    }

    /// Total number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.sizes.windows(2).map(|s| (s[0] + 1) * s[1]).sum()
    }

    /// All parameters, flattened (per layer: `W` row-major, then `b`).
    pub fn params(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.num_params());
        self.params.extend_into(&mut out);
        out
    }

    /// Replaces all parameters (same order as [`Mlp::params`]); invalidates the cached forward.
    pub fn set_params(&mut self, p: &[f64]) -> Result<(), String> {
        let n = self.num_params();
        if p.len() != n {
            return Err(format!(
                "Mlp::set_params: got {} values, expected {n}",
                p.len()
            ));
        }
        self.params.copy_from(p);
        self.cache.valid = false;
        Ok(())
    }

    /// The accumulated gradients, flattened in the order of [`Mlp::params`].
    pub fn grads(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.num_params());
        self.grads.extend_into(&mut out);
        out
    }

    /// Replaces the accumulated gradients (same order as [`Mlp::params`]), e.g. after clipping.
    pub fn set_grads(&mut self, g: &[f64]) -> Result<(), String> {
        let n = self.num_params();
        if g.len() != n {
            return Err(format!(
                "Mlp::set_grads: got {} values, expected {n}",
                g.len()
            ));
        }
        self.grads.copy_from(g);
        Ok(())
    }

    /// Sets the optimizer's learning rate (validity — finite, >= 0 — is the caller's concern;
    /// an invalid value makes a later [`Mlp::from_bytes`] of this network fail).
    pub fn set_lr(&mut self, new_lr: f64) {
        match &mut self.optimizer {
            Optimizer::Sgd { lr, .. } | Optimizer::Adam { lr, .. } => *lr = new_lr,
        }
    }

    /// Binary serialisation, all little-endian:
    /// magic `b"DLMMLP01"`; `u64` number of sizes, then each size as `u64`; `u8` hidden and
    /// `u8` output activation (0 identity, 1 relu, 2 softplus, 3 tanh); `u8` optimizer kind
    /// (0 SGD: `f64` lr, momentum; 1 Adam: `f64` lr, beta1, beta2, eps); `u64` step count;
    /// `u64` parameter count `n`; optimizer state (SGD: momentum buffer, `n` `f64`; Adam: first
    /// then second moment, `2n` `f64`); the `n` parameters as `f64`.
    /// Gradients and the forward cache are not stored.
    pub fn to_bytes(&self) -> Vec<u8> {
        let n = self.num_params();
        let states = self.optimizer.state_count();
        let mut out = Vec::with_capacity(64 + 8 * self.sizes.len() + 8 * n * (1 + states));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.sizes.len() as u64).to_le_bytes());
        for &s in &self.sizes {
            out.extend_from_slice(&(s as u64).to_le_bytes());
        }
        out.push(self.hidden.code());
        out.push(self.output.code());
        let hyper: &[f64] = match self.optimizer {
            Optimizer::Sgd { lr, momentum } => {
                out.push(0);
                &[lr, momentum]
            }
            Optimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
            } => {
                out.push(1);
                &[lr, beta1, beta2, eps]
            }
        };
        for v in hyper {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.steps.to_le_bytes());
        out.extend_from_slice(&(n as u64).to_le_bytes());
        let mut flat = Vec::with_capacity(n);
        let mut tensors = vec![&self.state1];
        if states == 2 {
            tensors.push(&self.state2);
        }
        tensors.push(&self.params);
        for t in tensors {
            flat.clear();
            t.extend_into(&mut flat);
            for v in &flat {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// Parses [`Mlp::to_bytes`] output, validating the magic, sizes, activation and optimizer
    /// codes, hyper-parameters, lengths (no truncation, no trailing bytes) and that every stored
    /// number is finite (and Adam's second moment non-negative). Never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let mut r = Reader { bytes, pos: 0 };
        let magic = r.take(MAGIC.len(), "magic header")?;
        if magic != MAGIC {
            return Err(format!(
                "Mlp::from_bytes: bad magic header {magic:?}, expected {:?} (\"DLMMLP01\")",
                MAGIC
            ));
        }
        let count = r.usize("number of sizes")?;
        if count < 2 {
            return Err(format!(
                "Mlp::from_bytes: number of sizes must be >= 2, got {count}"
            ));
        }
        if count > r.remaining() / 8 {
            return Err(format!(
                "Mlp::from_bytes: truncated: {count} sizes announced but only {} bytes left",
                r.remaining()
            ));
        }
        let mut sizes = Vec::with_capacity(count);
        for i in 0..count {
            sizes.push(r.usize(&format!("size {i}"))?);
        }
        let n = validate_sizes(&sizes).map_err(|e| format!("Mlp::from_bytes: {e}"))?;
        let hidden = r.activation("hidden activation")?;
        let output = r.activation("output activation")?;
        let kind = r.u8("optimizer kind")?;
        let optimizer = match kind {
            0 => Optimizer::Sgd {
                lr: r.f64("SGD lr")?,
                momentum: r.f64("SGD momentum")?,
            },
            1 => Optimizer::Adam {
                lr: r.f64("Adam lr")?,
                beta1: r.f64("Adam beta1")?,
                beta2: r.f64("Adam beta2")?,
                eps: r.f64("Adam eps")?,
            },
            k => {
                return Err(format!(
                    "Mlp::from_bytes: unknown optimizer kind {k} at offset {} (expected 0 = SGD or 1 = Adam)",
                    r.pos - 1
                ))
            }
        };
        optimizer
            .validate()
            .map_err(|e| format!("Mlp::from_bytes: {e}"))?;
        let steps = r.u64("step count")?;
        let stored_n = r.u64("parameter count")?;
        if stored_n != n as u64 {
            return Err(format!(
                "Mlp::from_bytes: stored parameter count {stored_n} does not match sizes {sizes:?} ({n} parameters)"
            ));
        }
        let states = optimizer.state_count();
        // n * 8 fits (validated); (1 + states) <= 3 may not, so check.
        let expected = (n * 8)
            .checked_mul(1 + states)
            .ok_or_else(|| "Mlp::from_bytes: parameter block size overflows".to_string())?;
        if r.remaining() != expected {
            return Err(format!(
                "Mlp::from_bytes: {} bytes: expected {expected} bytes of optimizer state and parameters after offset {}, found {}",
                if r.remaining() < expected { "truncated" } else { "trailing" },
                r.pos,
                r.remaining()
            ));
        }

        let mut read_tensors = |what: &str| -> Result<Tensors, String> {
            let start = r.pos;
            let mut flat = Vec::with_capacity(n);
            for i in 0..n {
                let v = r.f64(what)?;
                if !v.is_finite() {
                    return Err(format!(
                        "Mlp::from_bytes: {what} value {i} (offset {}) is not finite: {v}",
                        start + 8 * i
                    ));
                }
                flat.push(v);
            }
            let mut t = Tensors::zeros(&sizes);
            t.copy_from(&flat);
            Ok(t)
        };
        let state1 = read_tensors(if states == 2 {
            "Adam first moment"
        } else {
            "SGD momentum buffer"
        })?;
        let state2 = if states == 2 {
            let v = read_tensors("Adam second moment")?;
            let negative = v.w.iter().any(|a| a.iter().any(|&x| x < 0.0))
                || v.b.iter().any(|a| a.iter().any(|&x| x < 0.0));
            if negative {
                return Err("Mlp::from_bytes: Adam second moment has negative entries".to_string());
            }
            v
        } else {
            Tensors::zeros(&sizes)
        };
        let params = read_tensors("parameter")?;

        let mut net = Self::from_parts(sizes, hidden, output, optimizer, params);
        net.steps = steps;
        net.state1 = state1;
        net.state2 = state2;
        Ok(net)
    }
}

/// Bounds-checked little-endian reader for [`Mlp::from_bytes`].
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.remaining() < n {
            return Err(format!(
                "Mlp::from_bytes: truncated: need {n} bytes for {what} at offset {}, only {} left",
                self.pos,
                self.remaining()
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    fn array8(&mut self, what: &str) -> Result<[u8; 8], String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, what)?);
        Ok(a)
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array8(what)?))
    }

    fn usize(&mut self, what: &str) -> Result<usize, String> {
        let v = self.u64(what)?;
        usize::try_from(v)
            .map_err(|_| format!("Mlp::from_bytes: {what} = {v} does not fit in usize"))
    }

    fn f64(&mut self, what: &str) -> Result<f64, String> {
        Ok(f64::from_le_bytes(self.array8(what)?))
    }

    fn activation(&mut self, what: &str) -> Result<Activation, String> {
        let code = self.u8(what)?;
        Activation::from_code(code).ok_or_else(|| {
            format!(
                "Mlp::from_bytes: unknown {what} code {code} at offset {} (expected 0..=3)",
                self.pos - 1
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array, IxDyn};

    fn random_array(shape: &[usize], seed: u64) -> ArrayD<f64> {
        let mut rng = SplitMix64(seed);
        Array::from_shape_fn(IxDyn(shape), |_| rng.uniform(1.0))
    }

    fn loss(net: &Mlp, x: &ArrayD<f64>, r: &ArrayD<f64>) -> f64 {
        (net.predict(x.view()).unwrap() * r).sum()
    }

    /// Signs of the pre-activations of every ReLU layer (kink detector).
    fn relu_signs(net: &Mlp, x: &ArrayD<f64>) -> Vec<bool> {
        let mut probe = net.clone();
        probe.forward(x.view()).unwrap();
        let mut signs = Vec::new();
        for l in 0..probe.num_layers() {
            if probe.activation(l) == Activation::Relu {
                signs.extend(probe.cache.pre[l].iter().map(|&z| z > 0.0));
            }
        }
        signs
    }

    /// Max relative error of `analytic` against central differences of `sum(out * r)`;
    /// parameters whose perturbation crosses a ReLU kink are skipped (count returned).
    fn fd_max_err(net: &Mlp, x: &ArrayD<f64>, r: &ArrayD<f64>, analytic: &[f64]) -> (f64, usize) {
        let h = 1e-6;
        let base = net.params();
        let base_signs = relu_signs(net, x);
        let mut probe = net.clone();
        let mut worst = 0.0f64;
        let mut skipped = 0;
        for i in 0..base.len() {
            let mut p = base.clone();
            p[i] = base[i] + h;
            probe.set_params(&p).unwrap();
            let lp = loss(&probe, x, r);
            let kink_p = relu_signs(&probe, x) != base_signs;
            p[i] = base[i] - h;
            probe.set_params(&p).unwrap();
            let lm = loss(&probe, x, r);
            let kink_m = relu_signs(&probe, x) != base_signs;
            if kink_p || kink_m {
                skipped += 1;
                continue;
            }
            let numeric = (lp - lm) / (2.0 * h);
            let err =
                (numeric - analytic[i]).abs() / numeric.abs().max(analytic[i].abs()).max(1e-2);
            worst = worst.max(err);
        }
        (worst, skipped)
    }

    fn analytic_grads(net: &mut Mlp, x: &ArrayD<f64>, r: &ArrayD<f64>) -> Vec<f64> {
        net.zero_grad();
        let out = net.forward(x.view()).unwrap();
        assert_eq!(out.shape(), r.shape());
        net.backward(r.view()).unwrap();
        net.grads()
    }

    fn check_case(
        sizes: &[usize],
        hidden: Activation,
        output: Activation,
        x_shape: &[usize],
        seed: u64,
    ) {
        let mut net = Mlp::new(sizes, hidden, output, Optimizer::adam(1e-3), seed).unwrap();
        let mut x = random_array(x_shape, seed ^ 1);
        x.mapv_inplace(|v| 2.0 * v);
        let mut out_shape = x_shape.to_vec();
        *out_shape.last_mut().unwrap() = *sizes.last().unwrap();
        let r = random_array(&out_shape, seed ^ 2);
        let g = analytic_grads(&mut net, &x, &r);
        let (err, skipped) = fd_max_err(&net, &x, &r, &g);
        assert!(
            err < 1e-6,
            "{sizes:?} {hidden:?}/{output:?} x{x_shape:?}: max rel err {err}"
        );
        assert!(
            skipped * 20 <= g.len(),
            "too many kink skips: {skipped}/{}",
            g.len()
        );
        // Accumulation: a second backward doubles the gradients.
        net.backward(r.view()).unwrap();
        for (a, b) in net.grads().iter().zip(&g) {
            assert!((a - 2.0 * b).abs() <= 1e-12 * b.abs().max(1.0));
        }
    }

    #[test]
    fn finite_differences_match() {
        use Activation::*;
        // mu network of the sorting experiment: [B, d, 1] -> [B, d, d].
        check_case(&[1, 32, 4], Relu, Identity, &[3, 4, 1], 11);
        check_case(&[3, 8, 2], Relu, Identity, &[5, 3], 12);
        // sigma network: [B, d] -> [B, 1] with softplus.
        check_case(&[5, 1], Identity, Softplus, &[4, 5], 13);
        check_case(&[5, 1], Identity, Identity, &[2, 2, 5], 14);
        check_case(&[3, 6, 2], Identity, Softplus, &[2, 3, 3], 15);
        check_case(&[3, 6, 2], Relu, Softplus, &[7, 3], 16);
        check_case(&[3, 6, 5, 2], Tanh, Tanh, &[2, 4, 3], 17);
        check_case(&[3, 6, 2], Tanh, Identity, &[6, 3], 18);
        check_case(&[3, 6, 2], Softplus, Identity, &[6, 3], 19);
        // rank 1 input.
        check_case(&[4, 6, 3], Tanh, Softplus, &[4], 20);
    }

    #[test]
    fn finite_difference_check_detects_wrong_gradients() {
        let mut net = Mlp::new(
            &[3, 6, 2],
            Activation::Tanh,
            Activation::Softplus,
            Optimizer::sgd(0.1),
            5,
        )
        .unwrap();
        let x = random_array(&[4, 3], 6);
        let r = random_array(&[4, 2], 7);
        let g = analytic_grads(&mut net, &x, &r);
        assert!(fd_max_err(&net, &x, &r, &g).0 < 1e-6);
        let doubled: Vec<f64> = g.iter().map(|v| 2.0 * v).collect();
        assert!(fd_max_err(&net, &x, &r, &doubled).0 > 0.1);
        // A single wrong entry (a bias gradient scaled by 2) is caught too.
        let mut one = g.clone();
        let last = one.len() - 1;
        one[last] *= 2.0;
        assert!(fd_max_err(&net, &x, &r, &one).0 > 0.1);
        // Even a 1e-4 relative error in one weight gradient is caught.
        let mut tiny = g;
        tiny[0] *= 1.0 + 1e-4;
        assert!(fd_max_err(&net, &x, &r, &tiny).0 > 1e-6);
    }

    #[test]
    fn softplus_is_stable_and_matches_pytorch_threshold() {
        let s = Activation::Softplus;
        assert_eq!(s.apply(25.0), 25.0);
        assert_eq!(s.derivative(25.0, 25.0), 1.0);
        assert!((s.apply(0.0) - std::f64::consts::LN_2).abs() < 1e-15);
        assert!((s.apply(20.0) - (20.0 + (-20.0f64).exp().ln_1p())).abs() < 1e-12);
        assert_eq!(s.apply(-800.0), 0.0);
        assert!(s.apply(-30.0) > 0.0 && (s.apply(-30.0) / (-30.0f64).exp() - 1.0).abs() < 1e-12);
        assert_eq!(s.derivative(-800.0, 0.0), 0.0);
        assert_eq!(Activation::Relu.derivative(0.0, 0.0), 0.0);
    }

    #[test]
    fn adam_matches_pytorch_hand_computation() {
        // Linear(1 -> 1), params [w, b]; two steps with grads 0.5 then -0.2 on both.
        let mut net = Mlp::new(
            &[1, 1],
            Activation::Identity,
            Activation::Identity,
            Optimizer::adam(0.1),
            0,
        )
        .unwrap();
        net.set_params(&[1.0, -2.0]).unwrap();
        net.set_grads(&[0.5, 0.5]).unwrap();
        net.step();
        // t=1: m=0.05, v=0.00025, m_hat=0.5, sqrt(v_hat)=0.5 -> p -= 0.1 * 0.5 / (0.5 + 1e-8).
        let p = net.params();
        assert!((p[0] - 0.900_000_002).abs() < 1e-15, "{}", p[0]);
        assert!((p[1] - (-2.099_999_998)).abs() < 1e-15, "{}", p[1]);
        assert_eq!(net.grads(), vec![0.0, 0.0]);
        net.set_grads(&[-0.2, -0.2]).unwrap();
        net.step();
        // t=2: m=0.025, v=0.00028975; step_size = 0.1/0.19; denom = sqrt(v)/sqrt(0.001999) + 1e-8.
        let denom = 0.000_289_75f64.sqrt() / 0.001_999f64.sqrt() + 1e-8;
        let expected = 0.900_000_002 - 0.1 / 0.19 * (0.025 / denom);
        let p = net.params();
        assert!((p[0] - expected).abs() < 1e-15, "{} vs {expected}", p[0]);
        // Independently evaluated (Python, torch.optim.Adam's single-tensor update formula).
        assert!((p[0] - 0.865_439_418_116_510_8).abs() < 1e-15, "{}", p[0]);
        assert_eq!(net.step_count(), 2);
    }

    #[test]
    fn sgd_with_momentum_matches_pytorch() {
        let opt = Optimizer::Sgd {
            lr: 0.1,
            momentum: 0.9,
        };
        let mut net =
            Mlp::new(&[1, 1], Activation::Identity, Activation::Identity, opt, 0).unwrap();
        net.set_params(&[1.0, 0.0]).unwrap();
        net.set_grads(&[0.5, 1.0]).unwrap();
        net.step(); // buf = g
        net.set_grads(&[0.5, -1.0]).unwrap();
        net.step(); // buf = 0.9 * buf + g
        let p = net.params();
        assert!((p[0] - (1.0 - 0.05 - 0.1 * 0.95)).abs() < 1e-15);
        assert!((p[1] - (0.0 - 0.1 - 0.1 * -0.1)).abs() < 1e-15);
        let mut plain = Mlp::new(
            &[1, 1],
            Activation::Identity,
            Activation::Identity,
            Optimizer::sgd(0.5),
            0,
        )
        .unwrap();
        plain.set_params(&[1.0, 0.0]).unwrap();
        plain.set_grads(&[0.5, 1.0]).unwrap();
        plain.step();
        assert_eq!(plain.params(), vec![0.75, -0.5]);
    }

    #[test]
    fn init_is_seeded_and_pytorch_bounded() {
        let a = Mlp::new(
            &[4, 32, 10],
            Activation::Relu,
            Activation::Identity,
            Optimizer::adam(1e-3),
            42,
        )
        .unwrap();
        let b = Mlp::new(
            &[4, 32, 10],
            Activation::Relu,
            Activation::Identity,
            Optimizer::adam(1e-3),
            42,
        )
        .unwrap();
        let c = Mlp::new(
            &[4, 32, 10],
            Activation::Relu,
            Activation::Identity,
            Optimizer::adam(1e-3),
            43,
        )
        .unwrap();
        assert_eq!(a.params(), b.params());
        assert_ne!(a.params(), c.params());
        assert_eq!(a.num_params(), 4 * 32 + 32 + 32 * 10 + 10);
        assert_eq!(a.params().len(), a.num_params());
        let p = a.params();
        assert!(p[..160].iter().all(|v| v.abs() <= 0.5));
        assert!(p[160..].iter().all(|v| v.abs() <= 1.0 / 32f64.sqrt()));
        assert!(p[..160].iter().any(|v| v.abs() > 0.4));
        assert_eq!((a.input_width(), a.output_width()), (4, 10));
    }

    #[test]
    fn forward_matches_predict_and_shapes() {
        let mut mu = Mlp::new(
            &[1, 32, 6],
            Activation::Relu,
            Activation::Identity,
            Optimizer::adam(1e-3),
            3,
        )
        .unwrap();
        let x = random_array(&[10, 6, 1], 4);
        let y = mu.forward(x.view()).unwrap();
        assert_eq!(y.shape(), &[10, 6, 6]);
        assert_eq!(y, mu.predict(x.view()).unwrap());
        // Non-contiguous input (transposed view) gives the same rows.
        let xt = x.clone().reversed_axes();
        let xt_back = xt.view().reversed_axes();
        assert_eq!(mu.predict(xt_back).unwrap(), y);
        // Row-wise independence: the output for row i only depends on input row i.
        let row = x.index_axis(ndarray::Axis(0), 2).to_owned();
        let yr = mu.predict(row.view()).unwrap();
        assert_eq!(yr, y.index_axis(ndarray::Axis(0), 2));
        // Empty batch.
        let empty = ArrayD::<f64>::zeros(IxDyn(&[0, 6, 1]));
        assert_eq!(mu.forward(empty.view()).unwrap().shape(), &[0, 6, 6]);
        mu.backward(ArrayD::<f64>::zeros(IxDyn(&[0, 6, 6])).view())
            .unwrap();
        assert!(mu.grads().iter().all(|&g| g == 0.0));

        let sigma = Mlp::new(
            &[6, 1],
            Activation::Identity,
            Activation::Softplus,
            Optimizer::adam(1e-3),
            5,
        )
        .unwrap();
        let s = sigma.predict(random_array(&[10, 6], 6).view()).unwrap();
        assert_eq!(s.shape(), &[10, 1]);
        assert!(s.iter().all(|&v| v > 0.0));
    }

    #[test]
    fn shape_errors_are_err() {
        assert!(Mlp::new(
            &[3],
            Activation::Relu,
            Activation::Identity,
            Optimizer::adam(0.1),
            0
        )
        .is_err());
        assert!(Mlp::new(
            &[],
            Activation::Relu,
            Activation::Identity,
            Optimizer::adam(0.1),
            0
        )
        .is_err());
        assert!(Mlp::new(
            &[3, 0, 1],
            Activation::Relu,
            Activation::Identity,
            Optimizer::adam(0.1),
            0
        )
        .is_err());
        assert!(Mlp::new(
            &[usize::MAX, 2],
            Activation::Relu,
            Activation::Identity,
            Optimizer::adam(0.1),
            0
        )
        .is_err());
        assert!(Mlp::new(
            &[3, 1],
            Activation::Relu,
            Activation::Identity,
            Optimizer::adam(f64::NAN),
            0
        )
        .is_err());
        let bad_beta = Optimizer::Adam {
            lr: 0.1,
            beta1: 1.0,
            beta2: 0.999,
            eps: 1e-8,
        };
        assert!(Mlp::new(&[3, 1], Activation::Relu, Activation::Identity, bad_beta, 0).is_err());
        let bad_mom = Optimizer::Sgd {
            lr: 0.1,
            momentum: -1.0,
        };
        assert!(Mlp::new(&[3, 1], Activation::Relu, Activation::Identity, bad_mom, 0).is_err());

        let mut net = Mlp::new(
            &[3, 4, 2],
            Activation::Relu,
            Activation::Identity,
            Optimizer::adam(0.1),
            0,
        )
        .unwrap();
        let e = net
            .backward(ArrayD::zeros(IxDyn(&[5, 2])).view())
            .unwrap_err();
        assert!(e.contains("forward first"), "{e}");
        let e = net
            .forward(ArrayD::zeros(IxDyn(&[5, 4])).view())
            .unwrap_err();
        assert!(e.contains("expected 3"), "{e}");
        assert!(net.predict(ArrayD::zeros(IxDyn(&[5, 2])).view()).is_err());
        assert!(net.forward(ArrayD::zeros(IxDyn(&[])).view()).is_err());
        assert!(net.predict(ArrayD::zeros(IxDyn(&[])).view()).is_err());
        net.forward(ArrayD::zeros(IxDyn(&[5, 3])).view()).unwrap();
        assert!(net.backward(ArrayD::zeros(IxDyn(&[5, 3])).view()).is_err());
        assert!(net.backward(ArrayD::zeros(IxDyn(&[4, 2])).view()).is_err());
        assert!(net.backward(ArrayD::zeros(IxDyn(&[10])).view()).is_err());
        net.backward(ArrayD::zeros(IxDyn(&[5, 2])).view()).unwrap();
        assert!(net.set_params(&[0.0; 3]).is_err());
        assert!(net.set_grads(&[0.0; 3]).is_err());
        // After a step the cache is stale.
        net.step();
        assert!(net.backward(ArrayD::zeros(IxDyn(&[5, 2])).view()).is_err());
    }

    fn trained_net(opt: Optimizer) -> Mlp {
        let mut net = Mlp::new(&[2, 5, 3], Activation::Tanh, Activation::Softplus, opt, 9).unwrap();
        let x = random_array(&[4, 2], 10);
        let r = random_array(&[4, 3], 11);
        for _ in 0..3 {
            net.forward(x.view()).unwrap();
            net.backward(r.view()).unwrap();
            net.step();
        }
        net
    }

    #[test]
    fn serialisation_round_trip() {
        let x = random_array(&[3, 4, 2], 12);
        for opt in [
            Optimizer::adam(0.01),
            Optimizer::Sgd {
                lr: 0.01,
                momentum: 0.9,
            },
        ] {
            let net = trained_net(opt);
            let bytes = net.to_bytes();
            assert_eq!(&bytes[..8], b"DLMMLP01");
            let mut back = Mlp::from_bytes(&bytes).unwrap();
            assert_eq!(
                back.predict(x.view()).unwrap(),
                net.predict(x.view()).unwrap()
            );
            assert_eq!(back.to_bytes(), bytes);
            assert_eq!(back.optimizer(), opt);
            assert_eq!(back.step_count(), 3);
            // Optimizer state survives: one more identical step gives identical params.
            let mut orig = net.clone();
            let g: Vec<f64> = (0..net.num_params())
                .map(|i| (i as f64 * 0.37).sin())
                .collect();
            orig.set_grads(&g).unwrap();
            back.set_grads(&g).unwrap();
            orig.step();
            back.step();
            assert_eq!(orig.params(), back.params());
        }
    }

    #[test]
    fn corrupted_bytes_are_err() {
        let net = trained_net(Optimizer::adam(0.01));
        let bytes = net.to_bytes();
        for len in 0..bytes.len() {
            assert!(
                Mlp::from_bytes(&bytes[..len]).is_err(),
                "prefix {len} accepted"
            );
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(Mlp::from_bytes(&extra).unwrap_err().contains("trailing"));
        let mut magic = bytes.clone();
        magic[7] = b'2';
        assert!(Mlp::from_bytes(&magic).unwrap_err().contains("magic"));
        // NaN in the last parameter.
        let mut nan = bytes.clone();
        let n = nan.len();
        nan[n - 8..].copy_from_slice(&f64::NAN.to_le_bytes());
        assert!(Mlp::from_bytes(&nan).unwrap_err().contains("not finite"));
        // Huge sizes must not allocate or overflow.
        let mut huge = bytes.clone();
        huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Mlp::from_bytes(&huge).is_err());
        let mut huge_count = bytes.clone();
        huge_count[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Mlp::from_bytes(&huge_count).is_err());
        // Bad codes: sizes block is 8 + 8 + 3 * 8 = 40 bytes.
        for (offset, value) in [(40usize, 9u8), (41, 4), (42, 2)] {
            let mut bad = bytes.clone();
            bad[offset] = value;
            assert!(Mlp::from_bytes(&bad).is_err(), "offset {offset}");
        }
        // Invalid hyper-parameter (beta1 = 1).
        let mut beta = bytes.clone();
        beta[51..59].copy_from_slice(&1.0f64.to_le_bytes());
        assert!(Mlp::from_bytes(&beta).unwrap_err().contains("beta1"));
        // Every single-byte flip either parses or errors, never panics.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xFF;
            let _ = Mlp::from_bytes(&b);
        }
    }

    #[test]
    fn fits_linear_regression_with_adam() {
        let mut net = Mlp::new(
            &[1, 1],
            Activation::Identity,
            Activation::Identity,
            Optimizer::adam(0.1),
            1,
        )
        .unwrap();
        let n = 20;
        let x = Array::from_shape_fn(IxDyn(&[n, 1]), |i| {
            -1.0 + 2.0 * i[0] as f64 / (n - 1) as f64
        });
        let y = x.mapv(|v| 3.0 * v - 1.0);
        let mut last = f64::INFINITY;
        for _ in 0..500 {
            let out = net.forward(x.view()).unwrap();
            let diff = &out - &y;
            last = diff.mapv(|d| d * d).mean().unwrap();
            net.backward(diff.mapv(|d| 2.0 * d / n as f64).view())
                .unwrap();
            net.step();
        }
        assert!(last < 1e-6, "final loss {last}");
        let p = net.params();
        assert!(
            (p[0] - 3.0).abs() < 1e-2 && (p[1] + 1.0).abs() < 1e-2,
            "{p:?}"
        );
    }

    #[test]
    fn networks_above_the_parameter_limit_are_refused_before_allocating() {
        let opt = Optimizer::adam(1e-3);
        let a = Activation::Relu;
        let e = Mlp::new(&[1, 32, 100_000_000], a, a, opt, 0).unwrap_err();
        assert!(e.contains("above the limit of 134217728"), "{e}");
        let e = Mlp::new(&[usize::MAX, 2], a, a, opt, 0).unwrap_err();
        assert!(e.contains("overflows"), "{e}");
        // Just at the limit the sizes are accepted (not built here: 1 GiB).
        assert_eq!(validate_sizes(&[MAX_PARAMS / 2 - 1, 2]), Ok(MAX_PARAMS));
    }
}
