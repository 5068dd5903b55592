//! Output paths, checked before any training: each must name a file that can be written, in
//! an existing, writable directory; an existing file there must be a regular file (dlm never
//! replaces a directory, FIFO, socket, device, or a symbolic link to one); no two outputs may
//! be the same file.

use dlm_core::{DlmError, Result};
use std::path::{Component, Path, PathBuf};

/// A checked output: where to write, and the flag it came from.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    /// The flag (`--save`, ...), for messages.
    pub(crate) flag: &'static str,
    /// The path as given.
    pub(crate) given: PathBuf,
    /// Where to write: the path itself, or the file a symbolic link points to.
    pub(crate) target: PathBuf,
    /// The canonical directory and the file name, to tell two outputs apart.
    key: PathBuf,
}

fn refuse(flag: &str, p: &Path, why: impl std::fmt::Display) -> DlmError {
    DlmError::invalid(flag, format!("{}: {why}", p.display()))
}

#[cfg(unix)]
fn kind_of(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

#[cfg(not(unix))]
fn kind_of(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Checks one output path (see the module docs); creates and removes a probe file in its
/// directory to prove that it can be written.
pub(crate) fn check(flag: &'static str, p: &Path) -> Result<Output> {
    let raw = p.as_os_str().to_string_lossy();
    if raw.is_empty() {
        return Err(DlmError::invalid(flag, "an empty path; give a file name"));
    }
    let names_dir = raw.ends_with('/')
        || raw.ends_with(std::path::MAIN_SEPARATOR)
        || matches!(
            p.components().next_back(),
            Some(Component::CurDir | Component::ParentDir | Component::RootDir)
        )
        || raw.ends_with("/.")
        || raw == ".";
    if names_dir {
        return Err(refuse(
            flag,
            p,
            "names a directory; give a file name (e.g. DIR/model.dlm)",
        ));
    }
    let target = match std::fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_symlink() => match std::fs::metadata(p) {
            Ok(t) if t.is_file() => {
                std::fs::canonicalize(p).map_err(|e| DlmError::io("resolving", p, e))?
            }
            Ok(t) => {
                return Err(refuse(
                    flag,
                    p,
                    format!(
                        "is a symbolic link to {}; dlm replaces only regular files",
                        kind_of(t.file_type())
                    ),
                ))
            }
            Err(_) => {
                return Err(refuse(
                    flag,
                    p,
                    "is a symbolic link to nothing; remove it or give another path",
                ))
            }
        },
        Ok(m) if m.is_file() => p.to_path_buf(),
        Ok(m) => {
            let kind = kind_of(m.file_type());
            let hint = if m.is_dir() {
                "give a file name (e.g. DIR/model.dlm)"
            } else {
                "dlm replaces only regular files"
            };
            return Err(refuse(flag, p, format!("is {kind}; {hint}")));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => p.to_path_buf(),
        Err(e) => return Err(DlmError::io("checking", p, e)),
    };
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(refuse(
            flag,
            p,
            format!("directory {} does not exist", dir.display()),
        ));
    }
    let name = target.file_name().expect("checked above").to_owned();
    let probe = dir.join(format!(
        ".{}.dlm-probe-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    dlm_tasks::interrupt::while_writing(|| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
            .and_then(|_| std::fs::remove_file(&probe))
    })
    .map_err(|e| {
        refuse(
            flag,
            p,
            format!("cannot write in directory {}: {e}", dir.display()),
        )
    })?;
    let key = std::fs::canonicalize(dir)
        .map_err(|e| DlmError::io("resolving", dir, e))?
        .join(&name);
    Ok(Output {
        flag,
        given: p.to_path_buf(),
        target,
        key,
    })
}

/// Refuses two outputs that are the same file.
pub(crate) fn distinct(outputs: &[&Output]) -> Result<()> {
    for (i, a) in outputs.iter().enumerate() {
        for b in &outputs[i + 1..] {
            if a.key == b.key {
                return Err(DlmError::invalid(
                    b.flag,
                    format!(
                        "{} is the same file as {} {}; give each output its own file",
                        b.given.display(),
                        a.flag,
                        a.given.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Whether `p` is the file of output `o` (by the same rule as [`distinct`]).
pub(crate) fn same_file(o: &Output, p: &Path) -> bool {
    let dir = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let resolved = std::fs::canonicalize(p)
        .ok()
        .or_else(|| Some(std::fs::canonicalize(dir).ok()?.join(p.file_name()?)));
    resolved.is_some_and(|r| r == o.key || std::fs::canonicalize(&o.target).is_ok_and(|t| t == r))
}
