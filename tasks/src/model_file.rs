//! Saved models: a small, validated container written atomically.
//!
//! Layout (little-endian): `b"DLMMODEL"`, `u32` format version, `u32` header length, the header
//! as UTF-8 `key=value` lines, `u32` section count, then per section `u32` name length, the
//! name, `u64` byte length and the bytes (e.g. one section per scorer's weights).
//!
//! [`write_atomic`] writes to a temporary file in the same directory and renames it into place,
//! so a crash or a full disk never leaves a partly written model under the target name, and an
//! interrupt (SIGINT, SIGTERM) never leaves the temporary file behind ([`crate::interrupt`]).

use dlm_core::error::{DlmError, Result};
use dlm_core::limits::claimed_within;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

const MAGIC: &[u8; 8] = b"DLMMODEL";
const VERSION: u32 = 1;

/// A model file's contents.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelFile {
    /// Settings needed to rebuild the model (task, specs, sizes, ...).
    pub header: BTreeMap<String, String>,
    /// Named binary sections (scorer weights).
    pub sections: Vec<(String, Vec<u8>)>,
}

impl ModelFile {
    /// A required header value, or an error naming the key.
    pub fn get(&self, key: &str, path: &Path) -> Result<&str> {
        self.header
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| DlmError::format("model file", path, format!("header has no '{key}'")))
    }

    /// A required header value parsed as `T` (integers stay exact: a seed is a `u64`).
    pub fn parse<T: std::str::FromStr>(&self, key: &str, path: &Path) -> Result<T> {
        let raw = self.get(key, path)?;
        raw.parse().map_err(|_| {
            DlmError::format(
                "model file",
                path,
                format!(
                    "header '{key}' = '{raw}' is not a valid {}",
                    std::any::type_name::<T>()
                ),
            )
        })
    }

    /// A section by name.
    pub fn section(&self, name: &str, path: &Path) -> Result<&[u8]> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
            .ok_or_else(|| DlmError::format("model file", path, format!("no section '{name}'")))
    }

    /// Serialises to bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        let header: String = self
            .header
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&(self.sections.len() as u32).to_le_bytes());
        for (name, bytes) in &self.sections {
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        out
    }

    /// Parses bytes read from `path`, validating every length.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let bad = |m: &str| DlmError::format("model file", path, m.to_string());
        let mut rest: &[u8] = bytes;
        fn split<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (s, r) = rest.split_at_checked(n)?;
            *rest = r;
            Some(s)
        }
        let rest = &mut rest;
        if split(rest, 8).ok_or_else(|| bad("truncated"))? != MAGIC {
            return Err(bad(
                "not a dlm model (bad magic); pass a file written by dlm train --save",
            ));
        }
        let version = u32::from_le_bytes(
            split(rest, 4)
                .ok_or_else(|| bad("truncated"))?
                .try_into()
                .expect("4 bytes"),
        );
        if version != VERSION {
            return Err(bad(&format!(
                "format version {version}, this dlm reads version {VERSION}"
            )));
        }
        let hlen = u32::from_le_bytes(
            split(rest, 4)
                .ok_or_else(|| bad("truncated"))?
                .try_into()
                .expect("4 bytes"),
        ) as usize;
        let header_text = std::str::from_utf8(split(rest, hlen).ok_or_else(|| bad("truncated"))?)
            .map_err(|_| bad("header is not UTF-8"))?;
        let mut header = BTreeMap::new();
        for line in header_text.lines().filter(|l| !l.is_empty()) {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| bad("header line without '='"))?;
            if header.insert(k.to_string(), v.to_string()).is_some() {
                return Err(bad(&format!("header key '{k}' appears twice")));
            }
        }
        let count = u32::from_le_bytes(
            split(rest, 4)
                .ok_or_else(|| bad("truncated"))?
                .try_into()
                .expect("4 bytes"),
        );
        let mut sections = Vec::new();
        for _ in 0..count {
            let nlen = u32::from_le_bytes(
                split(rest, 4)
                    .ok_or_else(|| bad("truncated"))?
                    .try_into()
                    .expect("4 bytes"),
            ) as usize;
            let name = std::str::from_utf8(split(rest, nlen).ok_or_else(|| bad("truncated"))?)
                .map_err(|_| bad("section name is not UTF-8"))?
                .to_string();
            let blen = u64::from_le_bytes(
                split(rest, 8)
                    .ok_or_else(|| bad("truncated"))?
                    .try_into()
                    .expect("8 bytes"),
            );
            let blen = usize::try_from(blen).unwrap_or(usize::MAX);
            claimed_within(&[blen], 1, rest.len()).map_err(|m| {
                bad(&format!(
                    "section '{name}': {m} bytes after the section header; the file is truncated or corrupt"
                ))
            })?;
            sections.push((
                name,
                split(rest, blen).ok_or_else(|| bad("truncated"))?.to_vec(),
            ));
        }
        if !rest.is_empty() {
            return Err(bad("trailing bytes after the last section"));
        }
        Ok(ModelFile { header, sections })
    }

    /// Reads and validates a model file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| DlmError::io("reading", path, e))?;
        Self::from_bytes(&bytes, path)
    }

    /// Writes the model atomically (see [`write_atomic`]).
    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes())
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| {
            DlmError::invalid(
                "output path",
                format!("{} has no file name", path.display()),
            )
        })?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    // A signal cannot end the process between creating and renaming (or removing) the
    // temporary file: see crate::interrupt.
    crate::interrupt::while_writing(|| {
        let result = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        result.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            DlmError::io("writing", path, e)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut m = ModelFile::default();
        m.header.insert("task".into(), "sort".into());
        m.sections.push(("mu".into(), vec![1, 2, 3]));
        let b = m.to_bytes();
        let p = Path::new("x");
        assert_eq!(ModelFile::from_bytes(&b, p).unwrap(), m);
        for cut in 0..b.len() {
            assert!(ModelFile::from_bytes(&b[..cut], p).is_err());
        }
        let mut extra = b.clone();
        extra.push(0);
        assert!(ModelFile::from_bytes(&extra, p).is_err());
        // A section claiming more bytes than the file holds is refused before allocating.
        let mut huge = b.clone();
        let at = b.len() - 3 - 8;
        huge[at..at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
        let e = ModelFile::from_bytes(&huge, p).unwrap_err().to_string();
        assert!(
            e.contains(
                "section 'mu': the header claims 1152921504606846976 bytes, the file holds 3 bytes"
            ),
            "{e}"
        );
    }
}
