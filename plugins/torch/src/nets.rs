//! The network architectures, built from libtorch variables and run with the fallible (`f_`)
//! tensor operations, so that a libtorch failure is an error rather than a panic.
//!
//! Every layer is initialised as PyTorch does by default for `nn.Linear` and `nn.Conv2d`
//! (weights and biases uniform in `±1/sqrt(fan_in)`); batch norms start at weight 1, bias 0.

use tch::{nn, TchError, Tensor};

/// An element-wise activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `tanh(x)`.
    Tanh,
    /// `log(1 + exp(x))` (PyTorch's `softplus`, beta 1, threshold 20).
    Softplus,
    /// `x`.
    Identity,
}

impl Activation {
    /// Parses `relu`, `tanh`, `softplus` or `identity`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "relu" => Activation::Relu,
            "tanh" => Activation::Tanh,
            "softplus" => Activation::Softplus,
            "identity" => Activation::Identity,
            _ => return None,
        })
    }

    fn apply(self, x: Tensor) -> Result<Tensor, TchError> {
        match self {
            Activation::Relu => x.f_relu(),
            Activation::Tanh => x.f_tanh(),
            Activation::Softplus => x.f_softplus(),
            Activation::Identity => Ok(x),
        }
    }
}

/// An image shape `C x H x W`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageShape {
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

impl ImageShape {
    /// Parses `CxHxW` (e.g. `1x28x28`), every side at least 1.
    pub fn parse(s: &str) -> Option<Self> {
        let v: Vec<usize> = s
            .split('x')
            .map(|p| p.trim().parse().ok())
            .collect::<Option<_>>()?;
        match v[..] {
            [c, h, w] if c > 0 && h > 0 && w > 0 => Some(ImageShape { c, h, w }),
            _ => None,
        }
    }

    /// `C * H * W`: the width of a flattened image.
    pub fn numel(&self) -> usize {
        self.c * self.h * self.w
    }
}

impl std::fmt::Display for ImageShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.c, self.h, self.w)
    }
}

/// Which network to build, with its sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arch {
    /// Dense layers `sizes[0] -> ... -> sizes[last]` on the last axis.
    Mlp {
        /// Layer widths, input first.
        sizes: Vec<usize>,
        /// Activation after every hidden layer.
        hidden: Activation,
        /// Activation after the last layer.
        out: Activation,
    },
    /// Conv5x5(20) ReLU MaxPool2, Conv5x5(50) ReLU MaxPool2, FC `emb` ReLU.
    Lenet {
        /// Input image shape.
        input: ImageShape,
        /// Width of the last (ReLU) layer: the embedding.
        emb: usize,
    },
    /// The LeNet trunk with FC 500 ReLU, then FC 1 Softplus.
    SigmaMnist {
        /// Input image shape.
        input: ImageShape,
    },
    /// Conv5x5(20) ReLU MaxPool2, FC 1 Softplus.
    SigmaCifar {
        /// Input image shape.
        input: ImageShape,
    },
    /// CIFAR-style ResNet-18 (3x3 stem, no initial pooling), global average pooling, and a
    /// linear map to `emb` unless `emb` is the pooled width `8 * width`.
    Resnet18 {
        /// Input image shape.
        input: ImageShape,
        /// Base channels (64 in the original).
        width: usize,
        /// Output width.
        emb: usize,
    },
}

impl Arch {
    /// The image shape the network reads, if it is a convolutional one.
    pub fn image(&self) -> Option<ImageShape> {
        match self {
            Arch::Mlp { .. } => None,
            Arch::Lenet { input, .. }
            | Arch::SigmaMnist { input }
            | Arch::SigmaCifar { input }
            | Arch::Resnet18 { input, .. } => Some(*input),
        }
    }

    /// Input width (last axis).
    pub fn input_width(&self) -> usize {
        match self {
            Arch::Mlp { sizes, .. } => sizes[0],
            _ => self.image().map_or(0, |i| i.numel()),
        }
    }

    /// Output width (last axis).
    pub fn output_width(&self) -> usize {
        match self {
            Arch::Mlp { sizes, .. } => *sizes.last().unwrap_or(&0),
            Arch::Lenet { emb, .. } | Arch::Resnet18 { emb, .. } => *emb,
            Arch::SigmaMnist { .. } | Arch::SigmaCifar { .. } => 1,
        }
    }

    /// Checks the sizes; the message says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let side = |i: &ImageShape, f: &dyn Fn(usize) -> usize| (f(i.h), f(i.w));
        match self {
            Arch::Mlp { sizes, .. } => {
                if sizes.len() < 2 || sizes.contains(&0) {
                    return Err(format!(
                        "sizes {sizes:?}: need at least an input and an output width, all >= 1 (e.g. 784-256-64)"
                    ));
                }
            }
            Arch::Lenet { input, .. } | Arch::SigmaMnist { input } => {
                let (h, w) = side(input, &lenet_side);
                if h == 0 || w == 0 {
                    return Err(format!(
                        "input {input}: two 5x5 convolutions and 2x2 poolings need images of at least 16x16"
                    ));
                }
            }
            Arch::SigmaCifar { input } => {
                let (h, w) = side(input, &|s| s.saturating_sub(4) / 2);
                if h == 0 || w == 0 {
                    return Err(format!(
                        "input {input}: a 5x5 convolution and a 2x2 pooling need images of at least 6x6"
                    ));
                }
            }
            Arch::Resnet18 { width, .. } => {
                if *width == 0 {
                    return Err("width must be at least 1".into());
                }
            }
        }
        if self.output_width() == 0 {
            return Err("the output width must be at least 1".into());
        }
        Ok(())
    }
}

/// Side length after the LeNet trunk (0 if the image is too small).
fn lenet_side(s: usize) -> usize {
    (s.saturating_sub(4) / 2).saturating_sub(4) / 2
}

fn uniform(fan_in: i64) -> nn::Init {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    nn::Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

#[derive(Debug)]
pub(crate) struct Linear {
    w: Tensor,
    b: Tensor,
}

impl Linear {
    fn new(p: nn::Path<'_>, inp: usize, out: usize) -> Result<Self, TchError> {
        let (i, o) = (inp as i64, out as i64);
        Ok(Linear {
            w: p.f_var("weight", &[o, i], uniform(i))?,
            b: p.f_var("bias", &[o], uniform(i))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        x.f_linear(&self.w, Some(&self.b))
    }
}

#[derive(Debug)]
pub(crate) struct Conv {
    w: Tensor,
    b: Option<Tensor>,
    stride: i64,
    pad: i64,
}

impl Conv {
    fn new(
        p: nn::Path<'_>,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
        bias: bool,
    ) -> Result<Self, TchError> {
        let (ci, co, k) = (cin as i64, cout as i64, k as i64);
        let fan_in = ci * k * k;
        Ok(Conv {
            w: p.f_var("weight", &[co, ci, k, k], uniform(fan_in))?,
            b: if bias {
                Some(p.f_var("bias", &[co], uniform(fan_in))?)
            } else {
                None
            },
            stride: stride as i64,
            pad: pad as i64,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        x.f_conv2d(
            &self.w,
            self.b.as_ref(),
            [self.stride, self.stride],
            [self.pad, self.pad],
            [1, 1],
            1,
        )
    }
}

#[derive(Debug)]
pub(crate) struct BatchNorm {
    w: Tensor,
    b: Tensor,
    mean: Tensor,
    var: Tensor,
}

impl BatchNorm {
    fn new(p: nn::Path<'_>, c: usize) -> Result<Self, TchError> {
        let c = c as i64;
        Ok(BatchNorm {
            w: p.f_ones("weight", &[c])?,
            b: p.f_zeros("bias", &[c])?,
            mean: p.f_zeros_no_train("running_mean", &[c])?,
            var: p.f_ones_no_train("running_var", &[c])?,
        })
    }

    /// Batch statistics (updating the running ones) when training, running ones otherwise.
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor, TchError> {
        x.f_batch_norm(
            Some(&self.w),
            Some(&self.b),
            Some(&self.mean),
            Some(&self.var),
            train,
            0.1,
            1e-5,
            true,
        )
    }
}

fn max_pool2(x: &Tensor) -> Result<Tensor, TchError> {
    x.f_max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)
}

/// kuangliu/pytorch-cifar `BasicBlock`.
#[derive(Debug)]
pub(crate) struct Block {
    c1: Conv,
    b1: BatchNorm,
    c2: Conv,
    b2: BatchNorm,
    shortcut: Option<(Conv, BatchNorm)>,
}

impl Block {
    fn new(p: nn::Path<'_>, cin: usize, cout: usize, stride: usize) -> Result<Self, TchError> {
        let shortcut = if stride != 1 || cin != cout {
            Some((
                Conv::new(&p / "shortcut" / "0", cin, cout, 1, stride, 0, false)?,
                BatchNorm::new(&p / "shortcut" / "1", cout)?,
            ))
        } else {
            None
        };
        Ok(Block {
            c1: Conv::new(&p / "conv1", cin, cout, 3, stride, 1, false)?,
            b1: BatchNorm::new(&p / "bn1", cout)?,
            c2: Conv::new(&p / "conv2", cout, cout, 3, 1, 1, false)?,
            b2: BatchNorm::new(&p / "bn2", cout)?,
            shortcut,
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor, TchError> {
        let y = self.b1.forward(&self.c1.forward(x)?, train)?.f_relu()?;
        let y = self.b2.forward(&self.c2.forward(&y)?, train)?;
        let s = match &self.shortcut {
            Some((c, b)) => b.forward(&c.forward(x)?, train)?,
            None => x.shallow_clone(),
        };
        y.f_add(&s)?.f_relu()
    }
}

/// A built network: its layers hold (shallow copies of) the variables of a `VarStore`.
#[derive(Debug)]
pub(crate) enum Net {
    Mlp {
        layers: Vec<Linear>,
        hidden: Activation,
        out: Activation,
    },
    Lenet {
        conv1: Conv,
        conv2: Conv,
        fc: Linear,
        /// sigma-mnist: FC 1 + Softplus after the trunk.
        head: Option<Linear>,
    },
    SigmaCifar {
        conv1: Conv,
        fc: Linear,
    },
    Resnet {
        stem: Conv,
        bn: BatchNorm,
        blocks: Vec<Block>,
        head: Option<Linear>,
    },
}

impl Net {
    /// Creates the variables of `arch` under `root` (which must have been validated).
    pub(crate) fn build(arch: &Arch, root: &nn::Path<'_>) -> Result<Net, TchError> {
        Ok(match arch {
            Arch::Mlp { sizes, hidden, out } => Net::Mlp {
                layers: sizes
                    .windows(2)
                    .enumerate()
                    .map(|(i, w)| Linear::new(root / format!("fc{i}"), w[0], w[1]))
                    .collect::<Result<_, _>>()?,
                hidden: *hidden,
                out: *out,
            },
            Arch::Lenet { input, emb } => lenet(root, input, *emb, false)?,
            Arch::SigmaMnist { input } => lenet(root, input, 500, true)?,
            Arch::SigmaCifar { input } => {
                let side = |s: usize| (s - 4) / 2;
                Net::SigmaCifar {
                    conv1: Conv::new(root / "conv1", input.c, 20, 5, 1, 0, true)?,
                    fc: Linear::new(root / "fc1", 20 * side(input.h) * side(input.w), 1)?,
                }
            }
            Arch::Resnet18 { input, width, emb } => {
                let w = *width;
                let mut blocks = Vec::new();
                let mut cin = w;
                for (layer, (mult, stride)) in [(1, 1), (2, 2), (4, 2), (8, 2)].iter().enumerate() {
                    let cout = w * mult;
                    for b in 0..2 {
                        let p = root / format!("layer{}", layer + 1) / b;
                        blocks.push(Block::new(p, cin, cout, if b == 0 { *stride } else { 1 })?);
                        cin = cout;
                    }
                }
                Net::Resnet {
                    stem: Conv::new(root / "conv1", input.c, w, 3, 1, 1, false)?,
                    bn: BatchNorm::new(root / "bn1", w)?,
                    blocks,
                    head: if *emb != 8 * w {
                        Some(Linear::new(root / "linear", 8 * w, *emb)?)
                    } else {
                        None
                    },
                }
            }
        })
    }

    /// Runs the network on `x` (`[..., IN]` for the MLP, `[N, C, H, W]` for the others).
    pub(crate) fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor, TchError> {
        match self {
            Net::Mlp {
                layers,
                hidden,
                out,
            } => {
                let mut y = x.shallow_clone();
                for (i, l) in layers.iter().enumerate() {
                    let act = if i + 1 == layers.len() { *out } else { *hidden };
                    y = act.apply(l.forward(&y)?)?;
                }
                Ok(y)
            }
            Net::Lenet {
                conv1,
                conv2,
                fc,
                head,
            } => {
                let y = max_pool2(&conv1.forward(x)?.f_relu()?)?;
                let y = max_pool2(&conv2.forward(&y)?.f_relu()?)?;
                let y = fc.forward(&y.f_flatten(1, -1)?)?.f_relu()?;
                match head {
                    Some(h) => h.forward(&y)?.f_softplus(),
                    None => Ok(y),
                }
            }
            Net::SigmaCifar { conv1, fc } => {
                let y = max_pool2(&conv1.forward(x)?.f_relu()?)?;
                fc.forward(&y.f_flatten(1, -1)?)?.f_softplus()
            }
            Net::Resnet {
                stem,
                bn,
                blocks,
                head,
            } => {
                let mut y = bn.forward(&stem.forward(x)?, train)?.f_relu()?;
                for b in blocks {
                    y = b.forward(&y, train)?;
                }
                let y = y.f_adaptive_avg_pool2d([1, 1])?.f_flatten(1, -1)?;
                match head {
                    Some(h) => h.forward(&y),
                    None => Ok(y),
                }
            }
        }
    }
}

fn lenet(
    root: &nn::Path<'_>,
    input: &ImageShape,
    emb: usize,
    sigma: bool,
) -> Result<Net, TchError> {
    let flat = 50 * lenet_side(input.h) * lenet_side(input.w);
    Ok(Net::Lenet {
        conv1: Conv::new(root / "conv1", input.c, 20, 5, 1, 0, true)?,
        conv2: Conv::new(root / "conv2", 20, 50, 5, 1, 0, true)?,
        fc: Linear::new(root / "fc1", flat, emb)?,
        head: if sigma {
            Some(Linear::new(root / "fc2", emb, 1)?)
        } else {
            None
        },
    })
}
