//! The saved form of a torch scorer (the payload that `save` frames with a u64 length).
//!
//! All little-endian: magic `DLMTORCH`, format version u32, the scorer name, every variable of
//! the `VarStore` in name order (name, trainable flag, shape, values as f64), then the optimizer
//! (method code, step count, and per trainable variable its state tensors as f64). Values are
//! stored as f64 whatever the scorer's dtype and device, so files move between them.

/// First bytes of the payload.
pub const MAGIC: &[u8; 8] = b"DLMTORCH";
/// Format version.
pub const VERSION: u32 = 1;

/// One stored tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredVar {
    /// Variable name in the `VarStore` (e.g. `layer1.0.conv1.weight`).
    pub name: String,
    /// Trainable (a parameter) or a buffer (batch-norm running statistics).
    pub trainable: bool,
    /// Shape.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f64>,
}

/// Everything a scorer saves.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The registered scorer name.
    pub scorer: String,
    /// Variables in name order.
    pub vars: Vec<StoredVar>,
    /// [`crate::optim::Method::code`].
    pub method: u8,
    /// Optimizer steps taken.
    pub steps: u64,
    /// Per trainable variable (in order), its optimizer state tensors (flattened).
    pub state: Vec<Vec<Vec<f64>>>,
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

fn put_f64s(out: &mut Vec<u8>, v: &[f64]) {
    put_u64(out, v.len() as u64);
    out.reserve(8 * v.len());
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

impl Stored {
    /// The payload bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        put_u32(&mut out, VERSION);
        put_str(&mut out, &self.scorer);
        put_u64(&mut out, self.vars.len() as u64);
        for v in &self.vars {
            put_str(&mut out, &v.name);
            out.push(u8::from(v.trainable));
            put_u32(&mut out, v.shape.len() as u32);
            for &d in &v.shape {
                put_u64(&mut out, d as u64);
            }
            put_f64s(&mut out, &v.data);
        }
        out.push(self.method);
        put_u64(&mut out, self.steps);
        put_u64(&mut out, self.state.len() as u64);
        for slots in &self.state {
            put_u32(&mut out, slots.len() as u32);
            for s in slots {
                put_f64s(&mut out, s);
            }
        }
        out
    }

    /// Parses a payload, refusing anything malformed (the message says what).
    pub fn from_bytes(bytes: &[u8]) -> Result<Stored, String> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(8)? != MAGIC {
            return Err("not a dlm torch scorer file (bad magic)".into());
        }
        let version = r.u32()?;
        if version != VERSION {
            return Err(format!(
                "format version {version}, but this plugin reads version {VERSION}"
            ));
        }
        let scorer = r.string()?;
        let n = r.count(13)?;
        let mut vars = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.string()?;
            let trainable = match r.u8()? {
                0 => false,
                1 => true,
                b => return Err(format!("variable '{name}': bad trainable flag {b}")),
            };
            let ndim = r.u32()? as usize;
            if ndim > 8 {
                return Err(format!("variable '{name}': implausible rank {ndim}"));
            }
            let shape = (0..ndim)
                .map(|_| r.u64().map(|d| d as usize))
                .collect::<Result<Vec<_>, _>>()?;
            let data = r.f64s()?;
            let numel = shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .ok_or_else(|| format!("variable '{name}': shape {shape:?} overflows"))?;
            if numel != data.len() {
                return Err(format!(
                    "variable '{name}': shape {shape:?} but {} values",
                    data.len()
                ));
            }
            vars.push(StoredVar {
                name,
                trainable,
                shape,
                data,
            });
        }
        let method = r.u8()?;
        let steps = r.u64()?;
        let n = r.count(4)?;
        let mut state = Vec::with_capacity(n);
        for _ in 0..n {
            let k = r.u32()? as usize;
            if k > 2 {
                return Err(format!(
                    "{k} optimizer state tensors per variable (at most 2)"
                ));
            }
            state.push((0..k).map(|_| r.f64s()).collect::<Result<Vec<_>, _>>()?);
        }
        if r.pos != bytes.len() {
            return Err(format!("{} unexpected trailing bytes", bytes.len() - r.pos));
        }
        Ok(Stored {
            scorer,
            vars,
            method,
            steps,
            state,
        })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("truncated at byte {} (wanted {n} more)", self.pos))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    /// A count of items each at least `min_bytes` long, checked against what is left.
    fn count(&mut self, min_bytes: usize) -> Result<usize, String> {
        let n = self.u64()?;
        let left = (self.bytes.len() - self.pos) as u64;
        if n.saturating_mul(min_bytes as u64) > left {
            return Err(format!("count {n} exceeds the {left} bytes left"));
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Result<String, String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a name is not UTF-8".to_string())
    }

    fn f64s(&mut self) -> Result<Vec<f64>, String> {
        let n = self.count(8)?;
        Ok(self
            .take(8 * n)?
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Stored {
        Stored {
            scorer: "torch-mlp".into(),
            vars: vec![StoredVar {
                name: "fc0.weight".into(),
                trainable: true,
                shape: vec![2, 1],
                data: vec![1.0, -2.0],
            }],
            method: 1,
            steps: 3,
            state: vec![vec![vec![0.5, 0.25], vec![1.0, 2.0]]],
        }
    }

    #[test]
    fn round_trip() {
        let s = sample();
        assert_eq!(Stored::from_bytes(&s.to_bytes()).unwrap(), s);
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error() {
        let b = sample().to_bytes();
        for n in 0..b.len() {
            assert!(Stored::from_bytes(&b[..n]).is_err(), "prefix of {n} bytes");
        }
        let mut extra = b.clone();
        extra.push(0);
        assert!(Stored::from_bytes(&extra).is_err());
        // Flipping any single byte never panics.
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0xFF;
            let _ = Stored::from_bytes(&c);
        }
    }
}
