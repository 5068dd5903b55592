//! Checkpoints: everything a training run needs to continue exactly where it stopped.
//!
//! A checkpoint is a [`ModelFile`] (same container, written atomically the same way) whose
//! header has `kind=checkpoint` and `checkpoint_version=1`, and holds:
//!
//! * the header of the model the run would save (`task`, component specs, sizes, seed,
//!   `epsilon`, ...), so that `dlm eval --load` reads a checkpoint like a model;
//! * `setting.KEY=VALUE`: every setting a resumed run must share with the original (the
//!   model's, the trainer's, the evaluation's, and a checksum of the data), compared on
//!   resume;
//! * `arg.--FLAG=VALUE`: the command-line options that rebuild the run;
//! * `epsilon_bits`: the current `eps` as the hexadecimal bits of the `f64` (exact);
//! * `estimator_state.NAME`: every other value of the estimator's state (e.g. the adaptive
//!   eps policy's `eps_relative`), as hexadecimal bits;
//! * sections `mu` (and `sigma` when learned): the scorers as their `save` writes them, which
//!   for the built-in `mlp` includes the optimizer state (step count, Adam moments or SGD
//!   momentum);
//! * section `trainer`: the [`FitState`] (epochs done, early-stopping state with the
//!   moving-average window, history, the cursor of a partly run epoch, training seconds).
//!
//! The random draws of every task (data order, batches, noise) are counter-based, keyed by
//! the seed, epoch and step, so no generator state needs saving.

use crate::model::PerturbedModel;
use crate::model_file::ModelFile;
use crate::trainer::FitState;
use dlm_core::error::{DlmError, Result};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// The header value of `kind` that marks a checkpoint.
pub const KIND: &str = "checkpoint";
/// The checkpoint layout version this `dlm` writes and reads.
pub const VERSION: u32 = 1;

const SETTING: &str = "setting.";
const ARG: &str = "arg.";
const ESTIMATOR_STATE: &str = "estimator_state.";

/// A checkpoint's contents, split up.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The model-file header (with `epsilon`), without the checkpoint's own keys.
    pub model_header: BTreeMap<String, String>,
    /// The settings a resumed run must share.
    pub settings: BTreeMap<String, String>,
    /// The command-line options (`--flag`, value) that rebuild the run.
    pub args: Vec<(String, String)>,
    /// The trainer's state.
    pub state: FitState,
    /// The exact current `eps`.
    pub epsilon: f64,
    /// The estimator's other state values (not `epsilon`).
    pub estimator_values: BTreeMap<String, f64>,
    /// The scorer sections (`mu`, `sigma`).
    pub sections: Vec<(String, Vec<u8>)>,
}

fn check_text(what: &str, s: &str) -> Result<()> {
    if s.contains(['\n', '\r']) {
        return Err(DlmError::invalid(
            "checkpoint",
            format!(
                "{what} '{}' contains a line break and cannot be stored",
                s.escape_debug()
            ),
        ));
    }
    Ok(())
}

impl Checkpoint {
    /// Collects a checkpoint: the model's header and state (through
    /// [`PerturbedModel::save_into`]), the settings, the options and the trainer's state.
    pub fn capture(
        model_header: &BTreeMap<String, String>,
        settings: &BTreeMap<String, String>,
        args: &[(String, String)],
        model: &PerturbedModel,
        state: &FitState,
    ) -> Result<Self> {
        let mut m = ModelFile {
            header: model_header.clone(),
            sections: Vec::new(),
        };
        model.save_into(&mut m)?;
        Ok(Checkpoint {
            model_header: m.header,
            settings: settings.clone(),
            args: args.to_vec(),
            state: state.clone(),
            epsilon: model.epsilon(),
            estimator_values: model
                .estimator_state()
                .values()
                .iter()
                .filter(|(k, _)| k.as_str() != dlm_core::estimator::EPSILON_STATE)
                .map(|(k, &v)| (k.clone(), v))
                .collect(),
            sections: m.sections,
        })
    }

    /// The container to write.
    pub fn to_file(&self) -> Result<ModelFile> {
        let mut h = self.model_header.clone();
        for (k, v) in &h {
            check_text(k, v)?;
        }
        h.insert("kind".into(), KIND.into());
        h.insert("checkpoint_version".into(), VERSION.to_string());
        h.insert(
            "epsilon_bits".into(),
            format!("{:016x}", self.epsilon.to_bits()),
        );
        h.insert("epochs_done".into(), self.state.epochs_done.to_string());
        for (k, v) in &self.estimator_values {
            check_text(k, k)?;
            h.insert(
                format!("{ESTIMATOR_STATE}{k}"),
                format!("{:016x}", v.to_bits()),
            );
        }
        for (k, v) in &self.settings {
            check_text(k, v)?;
            if k.contains('=') {
                return Err(DlmError::invalid(
                    "checkpoint",
                    format!("setting name '{k}'"),
                ));
            }
            h.insert(format!("{SETTING}{k}"), v.clone());
        }
        for (k, v) in &self.args {
            check_text(k, v)?;
            if !k.starts_with("--") || k.contains('=') {
                return Err(DlmError::invalid(
                    "checkpoint",
                    format!("option name '{k}'"),
                ));
            }
            h.insert(format!("{ARG}{k}"), v.clone());
        }
        let mut sections = self.sections.clone();
        sections.push(("trainer".into(), self.state.to_bytes()));
        Ok(ModelFile {
            header: h,
            sections,
        })
    }

    /// Writes the checkpoint atomically to `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        self.to_file()?.write(path)
    }

    /// Splits a container read from `path`; refuses a model file or another version.
    pub fn from_file(m: ModelFile, path: &Path) -> Result<Self> {
        let bad = |msg: String| DlmError::format("checkpoint", path, msg);
        match m.header.get("kind").map(String::as_str) {
            Some(KIND) => {}
            _ => return Err(bad(
                "this is a model, not a checkpoint (write one with dlm train --checkpoint PATH)"
                    .into(),
            )),
        }
        let version: u32 = m.parse("checkpoint_version", path)?;
        if version != VERSION {
            return Err(bad(format!(
                "checkpoint version {version}, this dlm reads version {VERSION}"
            )));
        }
        let bits = u64::from_str_radix(m.get("epsilon_bits", path)?, 16)
            .map_err(|_| bad("epsilon_bits is not 16 hexadecimal digits".into()))?;
        let epsilon = f64::from_bits(bits);
        let state = FitState::from_bytes(m.section("trainer", path)?, &path.display().to_string())?;
        let mut model_header = BTreeMap::new();
        let mut settings = BTreeMap::new();
        let mut args = Vec::new();
        let mut estimator_values = BTreeMap::new();
        for (k, v) in m.header {
            if let Some(name) = k.strip_prefix(ESTIMATOR_STATE) {
                let bits = u64::from_str_radix(&v, 16)
                    .map_err(|_| bad(format!("{k} is not 16 hexadecimal digits")))?;
                estimator_values.insert(name.to_string(), f64::from_bits(bits));
            } else if let Some(s) = k.strip_prefix(SETTING) {
                settings.insert(s.to_string(), v);
            } else if let Some(a) = k.strip_prefix(ARG) {
                args.push((a.to_string(), v));
            } else if !["kind", "checkpoint_version", "epsilon_bits", "epochs_done"]
                .contains(&k.as_str())
            {
                model_header.insert(k, v);
            }
        }
        let sections = m
            .sections
            .into_iter()
            .filter(|(n, _)| n != "trainer")
            .collect();
        Ok(Checkpoint {
            model_header,
            settings,
            args,
            state,
            epsilon,
            estimator_values,
            sections,
        })
    }

    /// Reads and splits the checkpoint at `path`.
    pub fn read(path: &Path) -> Result<Self> {
        Self::from_file(ModelFile::read(path)?, path)
    }

    /// The model file the run would save now (what `--save` writes).
    pub fn model_file(&self) -> ModelFile {
        ModelFile {
            header: self.model_header.clone(),
            sections: self.sections.clone(),
        }
    }

    /// Loads the scorers (with their optimizer states) and the exact `eps` into `model`.
    pub fn restore(&self, model: &mut PerturbedModel, path: &Path) -> Result<()> {
        model.load_from(&self.model_file(), path)?;
        model.set_epsilon(self.epsilon);
        for (k, &v) in &self.estimator_values {
            model.set_estimator_value(k, v);
        }
        Ok(())
    }
}

/// A 64-bit checksum of a byte stream (not cryptographic: it tells changed data apart, it
/// does not resist forgery). The same bytes give the same value whatever the chunking.
#[derive(Debug, Clone)]
pub struct Checksum {
    h: u64,
    tail: [u8; 8],
    tail_len: usize,
    total: u64,
}

impl Default for Checksum {
    fn default() -> Self {
        Checksum {
            h: 0x6a09_e667_f3bc_c908,
            tail: [0; 8],
            tail_len: 0,
            total: 0,
        }
    }
}

impl Checksum {
    fn word(&mut self, w: u64) {
        // One multiply-xorshift round per word (as in splitmix/wyhash-like mixers).
        self.h = (self.h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.h ^= self.h >> 31;
    }

    /// Adds bytes.
    pub fn update(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        if self.tail_len > 0 {
            let n = (8 - self.tail_len).min(bytes.len());
            self.tail[self.tail_len..self.tail_len + n].copy_from_slice(&bytes[..n]);
            self.tail_len += n;
            bytes = &bytes[n..];
            if self.tail_len < 8 {
                return;
            }
            self.word(u64::from_le_bytes(self.tail));
            self.tail_len = 0;
        }
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    /// Adds the bits of `f64` values.
    pub fn update_f64s(&mut self, values: impl IntoIterator<Item = f64>) {
        for v in values {
            self.update(&v.to_bits().to_le_bytes());
        }
    }

    /// The checksum of everything added, as 16 hexadecimal digits.
    pub fn hex(&self) -> String {
        let mut c = self.clone();
        let mut last = [0u8; 8];
        last[..c.tail_len].copy_from_slice(&c.tail[..c.tail_len]);
        c.word(u64::from_le_bytes(last));
        c.word(c.total);
        let mut h = c.h;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        format!("{h:016x}")
    }
}

/// The [`Checksum`] of a file's bytes, read in chunks.
pub fn checksum_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| DlmError::io("reading", path, e))?;
    let mut c = Checksum::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| DlmError::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        c.update(&buf[..n]);
    }
    Ok(c.hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_ignores_chunking_and_sees_every_byte() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut whole = Checksum::default();
        whole.update(&data);
        for split in [1, 3, 8, 13, 999] {
            let mut c = Checksum::default();
            for part in data.chunks(split) {
                c.update(part);
            }
            assert_eq!(c.hex(), whole.hex(), "split {split}");
        }
        let mut flipped = data.clone();
        flipped[500] ^= 1;
        let mut c = Checksum::default();
        c.update(&flipped);
        assert_ne!(c.hex(), whole.hex());
        // A trailing zero byte changes the checksum (the length is mixed in).
        let mut c = Checksum::default();
        c.update(&data);
        c.update(&[0]);
        assert_ne!(c.hex(), whole.hex());
    }
}
