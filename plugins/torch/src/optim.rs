//! Adam and SGD on libtorch tensors, with the update rules of `torch.optim.Adam` and
//! `torch.optim.SGD` (no weight decay, no dampening, no Nesterov).
//!
//! Written here rather than taken from `tch::nn::Optimizer` because that one cannot hand out
//! its state: this one saves its moments with the weights (so a resumed run continues exactly)
//! and moves them with the model to another device.

use tch::{TchError, Tensor};

/// The update rule and its hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// `buf = momentum * buf + g` (`buf = g` at the first step), `p -= lr * buf`.
    Sgd {
        /// Learning rate.
        lr: f64,
        /// Momentum (0: plain SGD, no buffer).
        momentum: f64,
    },
    /// Adam (Kingma & Ba) with bias correction.
    Adam {
        /// Learning rate.
        lr: f64,
        /// Decay of the first moment.
        beta1: f64,
        /// Decay of the second moment.
        beta2: f64,
        /// Added to the root of the second moment.
        eps: f64,
    },
}

impl Method {
    /// Adam with PyTorch's defaults and learning rate `lr`.
    pub fn adam(lr: f64) -> Self {
        Method::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// Code stored in saved files (0 SGD, 1 Adam).
    pub fn code(&self) -> u8 {
        match self {
            Method::Sgd { .. } => 0,
            Method::Adam { .. } => 1,
        }
    }

    /// State tensors per parameter once a step has been taken.
    pub fn slots(&self) -> usize {
        match self {
            Method::Sgd { momentum, .. } => usize::from(*momentum != 0.0),
            Method::Adam { .. } => 2,
        }
    }
}

/// An optimizer with its per-parameter state.
#[derive(Debug)]
pub struct Optimizer {
    /// The update rule.
    pub method: Method,
    /// Steps taken (Adam's bias correction uses it).
    pub steps: u64,
    /// Per parameter: empty before its first update, else [`Method::slots`] tensors.
    pub state: Vec<Vec<Tensor>>,
}

impl Optimizer {
    /// A fresh optimizer for `n` parameters.
    pub fn new(method: Method, n: usize) -> Self {
        Optimizer {
            method,
            steps: 0,
            state: (0..n).map(|_| Vec::new()).collect(),
        }
    }

    /// Forgets the state (moments, step count).
    pub fn reset(&mut self) {
        self.steps = 0;
        self.state.iter_mut().for_each(Vec::clear);
    }

    /// One update of `params` with their accumulated gradients (parameters without a gradient
    /// are left alone).
    pub fn step(&mut self, params: &mut [Tensor]) -> Result<(), TchError> {
        if self.state.len() != params.len() {
            self.state = (0..params.len()).map(|_| Vec::new()).collect();
        }
        self.steps += 1;
        let t = self.steps as i32;
        let method = self.method;
        let state = &mut self.state;
        tch::no_grad(|| {
            for (p, st) in params.iter_mut().zip(state.iter_mut()) {
                let g = p.f_grad()?;
                if !g.defined() {
                    continue;
                }
                match method {
                    Method::Sgd { lr, momentum } => {
                        let d = if momentum != 0.0 {
                            if st.is_empty() {
                                st.push(g.f_mul_scalar(1.0)?);
                            } else {
                                let _ = st[0].f_mul_scalar_(momentum)?;
                                let _ = st[0].f_add_(&g)?;
                            }
                            st[0].shallow_clone()
                        } else {
                            g
                        };
                        let _ = p.f_sub_(&d.f_mul_scalar(lr)?)?;
                    }
                    Method::Adam {
                        lr,
                        beta1,
                        beta2,
                        eps,
                    } => {
                        if st.is_empty() {
                            st.push(p.f_zeros_like()?);
                            st.push(p.f_zeros_like()?);
                        }
                        let (m, v) = st.split_at_mut(1);
                        let (m, v) = (&mut m[0], &mut v[0]);
                        let _ = m.f_mul_scalar_(beta1)?;
                        let _ = m.f_add_(&g.f_mul_scalar(1.0 - beta1)?)?;
                        let _ = v.f_mul_scalar_(beta2)?;
                        let _ = v.f_add_(&g.f_mul(&g)?.f_mul_scalar(1.0 - beta2)?)?;
                        let bc1 = 1.0 - beta1.powi(t);
                        let bc2 = 1.0 - beta2.powi(t);
                        let denom = v.f_sqrt()?.f_div_scalar(bc2.sqrt())?.f_add_scalar(eps)?;
                        let _ = p.f_sub_(&m.f_div(&denom)?.f_mul_scalar(lr / bc1)?)?;
                    }
                }
            }
            Ok(())
        })
    }
}
