//! Arrays of numbers from files: CSV tables and `.npy` arrays, validated before anything is
//! allocated from what they claim.
//!
//! * CSV ([`parse_csv`]): one row of numbers per line, separated by `,`, `;` or tabs; blank
//!   lines and lines starting with `#` are skipped. The first other line is a header only if
//!   declared ([`CsvHeader::Present`]) or if every field looks like a column name
//!   ([`looks_like_header`]: a letter or `_` first, then letters, digits and `_-. ()[]/`,
//!   optionally quoted, and not a float literal such as `nan` or `inf`). Anything else that
//!   is not a finite number is an error naming the line, the column and the text. The result
//!   is always 2-d, `[rows, columns]` (a single value is `[1, 1]`); a command that needs a
//!   vector reshapes a single row or column itself.
//! * `.npy` ([`parse_npy`], [`read_npy`]): float64 or float32 (either byte order, C or
//!   Fortran order, any rank). The header is parsed here (magic, version, header length, the
//!   `descr` / `fortran_order` / `shape` dictionary) and the size it claims is compared with
//!   the bytes present ([`dlm_core::limits::claimed_exactly`]) before the data is read, so a
//!   header claiming `(100000, 100000)` in front of four values is an error, not an 80 GB
//!   allocation.
//!
//! Memory: [`parse_csv`] holds the text and one `f64` per value (each value takes at least
//! two bytes of text), [`parse_npy`] the bytes and at most twice as many for the `f64`s.

use dlm_core::error::{DlmError, Result};
use dlm_core::limits::claimed_exactly;
use ndarray::{ArrayD, IxDyn, ShapeBuilder};
use std::io::Read;
use std::path::Path;

/// Whether a CSV file starts with a header line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CsvHeader {
    /// The first line (after comments) is a header only if every field looks like a column
    /// name ([`looks_like_header`]).
    #[default]
    Auto,
    /// The first line (after comments) is a header, whatever it holds.
    Present,
}

/// The kinds of array file [`read_array`] reads, by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrayFile {
    /// `.npy`: shape as stored.
    Npy,
    /// `.csv` or `.txt`: a 2-d table `[rows, columns]`.
    Csv,
}

impl ArrayFile {
    /// The kind of `path` from its extension (case-insensitive).
    ///
    /// # Errors
    /// Any other extension.
    pub fn of(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        match ext.as_str() {
            "npy" => Ok(ArrayFile::Npy),
            "csv" | "txt" => Ok(ArrayFile::Csv),
            _ => Err(DlmError::invalid(
                "input file",
                format!("{}: use a .npy or .csv file", path.display()),
            )),
        }
    }
}

/// Reads an array from a `.npy` file or a CSV file (`.csv`, `.txt`; see the module docs).
///
/// # Errors
/// An unreadable file, an unknown extension, or malformed contents (see [`parse_csv`] and
/// [`parse_npy`]).
pub fn read_array(path: &Path, header: CsvHeader) -> Result<ArrayD<f64>> {
    match ArrayFile::of(path)? {
        ArrayFile::Npy => read_npy(path),
        ArrayFile::Csv => {
            let bytes = std::fs::read(path).map_err(|e| DlmError::io("reading", path, e))?;
            parse_csv(&bytes, path, header)
        }
    }
}

/// Longest excerpt of offending text quoted in a message.
const QUOTE: usize = 40;

fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE) {
        Some((i, _)) => format!("'{}...'", &s[..i]),
        None => format!("'{s}'"),
    }
}

/// Whether a CSV field spells a float that Rust parses but no table of data should hold
/// as a name (`nan`, `inf`, `infinity`, with an optional sign).
fn is_float_word(s: &str) -> bool {
    let t = s.trim_start_matches(['+', '-']).to_ascii_lowercase();
    matches!(t.as_str(), "nan" | "inf" | "infinity")
}

/// Whether every field of a line looks like a column name: optionally quoted (`"..."` or
/// `'...'`), a letter or `_` first, then letters, digits, spaces and `_-.()[]/`, and not a
/// float literal (`nan`, `inf`, `infinity`).
pub fn looks_like_header(fields: &[&str]) -> bool {
    !fields.is_empty()
        && fields.iter().all(|f| {
            let f = f.trim();
            let inner = f
                .strip_prefix('"')
                .and_then(|g| g.strip_suffix('"'))
                .or_else(|| f.strip_prefix('\'').and_then(|g| g.strip_suffix('\'')))
                .unwrap_or(f)
                .trim();
            let mut chars = inner.chars();
            chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
                && chars.all(|c| c.is_alphanumeric() || " _-.()[]/".contains(c))
                && !is_float_word(inner)
        })
}

/// Parses CSV text (see the module docs) into a 2-d array `[rows, columns]`; `source` names
/// the file in messages.
///
/// # Errors
/// Text that is not UTF-8; a field that is not a finite number ("line 3, column 2: 'abc' is
/// not a number"; NaN and infinite values are refused the same way); rows of different
/// lengths; no rows of numbers at all.
pub fn parse_csv(bytes: &[u8], source: &Path, header: CsvHeader) -> Result<ArrayD<f64>> {
    let bad = |m: String| DlmError::format("CSV file", source, m);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count();
        bad(format!(
            "line {line}: not UTF-8 text (byte offset {at}); save the file as plain text"
        ))
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut values: Vec<f64> = Vec::new();
    let mut width: Option<(usize, usize)> = None; // (columns, line of the first row)
    let mut rows = 0usize;
    let mut header_line: Option<(usize, &str)> = None;
    let mut first = true;
    for (index, raw) in text.split('\n').enumerate() {
        let lineno = index + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw).trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split([',', ';', '\t']).collect();
        if std::mem::take(&mut first)
            && (header == CsvHeader::Present || looks_like_header(&fields))
        {
            header_line = Some((lineno, line));
            continue;
        }
        let start = values.len();
        for (col, field) in fields.iter().enumerate() {
            let f = field.trim();
            let at = format!("line {lineno}, column {}", col + 1);
            if f.is_empty() {
                return Err(bad(format!(
                    "{at}: empty field in {}; write a number between the separators",
                    quote(line)
                )));
            }
            let v: f64 = f.parse().map_err(|_| {
                bad(format!(
                    "{at}: {} is not a number{}",
                    quote(f),
                    if rows == 0 && header_line.is_none() {
                        " (a header line must name every column, e.g. x,y,z)"
                    } else {
                        ""
                    }
                ))
            })?;
            if !v.is_finite() {
                return Err(bad(if is_float_word(f) {
                    format!(
                        "{at}: {} is not a finite number; NaN and infinite values are refused",
                        quote(f)
                    )
                } else {
                    format!(
                        "{at}: {} overflows f64 (largest magnitude {:e})",
                        quote(f),
                        f64::MAX
                    )
                }));
            }
            values.push(v);
        }
        let w = values.len() - start;
        match width {
            None => width = Some((w, lineno)),
            Some((expected, first_line)) if expected != w => {
                return Err(bad(format!(
                "line {lineno} has {w} values but line {first_line} (the first row) has {expected}"
            )))
            }
            Some(_) => {}
        }
        rows += 1;
    }
    let Some((w, _)) = width else {
        return Err(DlmError::Empty {
            what: format!("CSV file {}", source.display()),
            hint: match header_line {
                Some((l, h)) => format!(
                    "line {l} ({}) was read as a header and no rows of numbers follow; write one row of comma-separated numbers per line",
                    quote(h)
                ),
                None => "write one row of comma-separated numbers per line".into(),
            },
        });
    };
    Ok(ArrayD::from_shape_vec(IxDyn(&[rows, w]), values).expect("rows * width values"))
}

/// The `.npy` magic string.
const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Longest `.npy` header accepted (numpy writes well under 1 KiB).
pub const MAX_NPY_HEADER: usize = 1 << 20;

/// A parsed `.npy` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// Bytes per value (8 or 4).
    pub elem: usize,
    /// Whether the values are big-endian.
    pub big_endian: bool,
    /// Column-major (Fortran) order.
    pub fortran_order: bool,
    /// The shape.
    pub shape: Vec<usize>,
    /// Offset of the data.
    pub data_start: usize,
}

/// Where the header ends, from the first 12 (or more) bytes: `(header text range, data
/// start)`.
fn npy_prelude(bytes: &[u8], bad: &dyn Fn(String) -> DlmError) -> Result<(usize, usize)> {
    if bytes.len() < 10 || &bytes[..6] != NPY_MAGIC {
        return Err(bad(
            "no .npy magic string (\\x93NUMPY) at the start; write the file with numpy.save".into(),
        ));
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        2 | 3 => return Err(bad("truncated header".into())),
        v => return Err(bad(format!("unsupported format version {v}.{}", bytes[7]))),
    };
    if len > MAX_NPY_HEADER {
        return Err(bad(format!(
            "the header claims {len} bytes, more than the {MAX_NPY_HEADER} this reader accepts"
        )));
    }
    Ok((start, start + len))
}

/// Parses the header of `.npy` bytes (`bytes` must hold at least the whole header).
///
/// # Errors
/// A bad magic string or version, a truncated header, or a dictionary that is not
/// `{'descr': '<f8' | '<f4' (either byte order), 'fortran_order': True | False, 'shape':
/// (d, ...)}`.
pub fn parse_npy_header(bytes: &[u8], source: &Path) -> Result<NpyHeader> {
    let bad = |m: String| DlmError::format(".npy array", source, m);
    let (start, end) = npy_prelude(bytes, &bad)?;
    if end > bytes.len() {
        return Err(bad(format!(
            "truncated header: it claims {} bytes, the file holds {}",
            end - start,
            bytes.len().saturating_sub(start)
        )));
    }
    let text = std::str::from_utf8(&bytes[start..end])
        .map_err(|_| bad("the header is not text".into()))?;
    let dict = parse_dict(text).map_err(|m| bad(format!("header {}: {m}", quote(text.trim()))))?;
    let mut descr = None;
    let mut fortran = None;
    let mut shape = None;
    for (k, v) in dict {
        match (k.as_str(), v) {
            ("descr", Value::Str(s)) if descr.is_none() => descr = Some(s),
            ("fortran_order", Value::Bool(b)) if fortran.is_none() => fortran = Some(b),
            ("shape", Value::Tuple(t)) if shape.is_none() => shape = Some(t),
            (k, _) => {
                return Err(bad(format!(
                    "header key '{k}' is unknown, repeated or of the wrong type (expected descr, fortran_order, shape)"
                )))
            }
        }
    }
    let (Some(descr), Some(fortran_order), Some(shape)) = (descr, fortran, shape) else {
        return Err(bad(
            "the header must give descr, fortran_order and shape".into()
        ));
    };
    let (big_endian, elem) = match descr.as_str() {
        "<f8" => (false, 8),
        ">f8" => (true, 8),
        "<f4" => (false, 4),
        ">f4" => (true, 4),
        d => {
            return Err(bad(format!(
                "dtype '{d}' is not float64 or float32 (save the array with .astype(float))"
            )))
        }
    };
    Ok(NpyHeader {
        elem,
        big_endian,
        fortran_order,
        shape,
        data_start: end,
    })
}

/// The values of a `.npy` header dictionary.
enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

/// Parses the Python dictionary literal of a `.npy` header (string keys; string, boolean
/// and integer-tuple values), followed by padding.
fn parse_dict(text: &str) -> std::result::Result<Vec<(String, Value)>, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    p.expect(b'{')?;
    let mut out = Vec::new();
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.ws();
        p.expect(b':')?;
        p.ws();
        let value = match p.peek() {
            Some(b'\'' | b'"') => Value::Str(p.string()?),
            Some(b'(') => Value::Tuple(p.tuple()?),
            Some(b'T') if p.word("True") => Value::Bool(true),
            Some(b'F') if p.word("False") => Value::Bool(false),
            _ => return Err(format!("unexpected value for '{key}' at byte {}", p.i)),
        };
        out.push((key, value));
        p.ws();
        if p.eat(b',') {
            continue;
        }
        p.ws();
        p.expect(b'}')?;
        break;
    }
    if p.s[p.i..].iter().any(|b| !b.is_ascii_whitespace()) {
        return Err(format!(
            "unexpected text after the dictionary at byte {}",
            p.i
        ));
    }
    Ok(out)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.i += 1;
        }
    }
    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.i += usize::from(hit);
        hit
    }
    fn expect(&mut self, b: u8) -> std::result::Result<(), String> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", b as char, self.i))
        }
    }
    fn word(&mut self, w: &str) -> bool {
        let hit = self.s[self.i..].starts_with(w.as_bytes());
        if hit {
            self.i += w.len();
        }
        hit
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        let q = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a quoted string at byte {}", self.i)),
        };
        let start = self.i + 1;
        let len = self.s[start..]
            .iter()
            .position(|&b| b == q)
            .ok_or_else(|| "unterminated string".to_string())?;
        self.i = start + len + 1;
        Ok(String::from_utf8_lossy(&self.s[start..start + len]).into_owned())
    }
    fn tuple(&mut self) -> std::result::Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            self.ws();
            if self.eat(b')') {
                return Ok(dims);
            }
            let start = self.i;
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.i += 1;
            }
            let digits = std::str::from_utf8(&self.s[start..self.i]).expect("ASCII digits");
            if digits.is_empty() {
                return Err(format!("expected a dimension at byte {start}"));
            }
            dims.push(
                digits
                    .parse()
                    .map_err(|_| format!("dimension {digits} is too large"))?,
            );
            if self.peek() == Some(b'L') {
                self.i += 1; // Python 2 long
            }
            self.ws();
            if !self.eat(b',') {
                self.ws();
                self.expect(b')')?;
                return Ok(dims);
            }
        }
    }
}

/// Decodes the data of a validated header (`data` holds exactly the claimed bytes).
fn npy_values(h: &NpyHeader, data: &[u8]) -> ArrayD<f64> {
    let values: Vec<f64> = match (h.elem, h.big_endian) {
        (8, false) => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect(),
        (8, true) => data
            .chunks_exact(8)
            .map(|c| f64::from_be_bytes(c.try_into().expect("8 bytes")))
            .collect(),
        (_, false) => data
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes(c.try_into().expect("4 bytes"))))
            .collect(),
        (_, true) => data
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_be_bytes(c.try_into().expect("4 bytes"))))
            .collect(),
    };
    let shape = IxDyn(&h.shape);
    let a = if h.fortran_order {
        ArrayD::from_shape_vec(shape.f(), values)
    } else {
        ArrayD::from_shape_vec(shape, values)
    };
    a.expect("size checked against the header")
        .as_standard_layout()
        .into_owned()
}

fn claim_error(source: &Path) -> impl Fn(String) -> DlmError + '_ {
    move |m| {
        DlmError::format(
            ".npy array",
            source,
            format!("{m}; the file is truncated or its header is wrong"),
        )
    }
}

/// Parses `.npy` bytes into an array (float32 values are widened to float64).
///
/// # Errors
/// As [`parse_npy_header`]; a size the header claims that differs from the bytes present
/// ("the header claims shape [100000, 100000] = 10000000000 values (80000000000 bytes), the
/// file holds 32 bytes (4 values)").
pub fn parse_npy(bytes: &[u8], source: &Path) -> Result<ArrayD<f64>> {
    let h = parse_npy_header(bytes, source)?;
    let data = &bytes[h.data_start..];
    claimed_exactly(&h.shape, h.elem, data.len()).map_err(claim_error(source))?;
    Ok(npy_values(&h, data))
}

/// Reads a `.npy` file: the header first, whose claimed size is compared with the file's
/// length before the data is read (see [`parse_npy`]).
///
/// # Errors
/// As [`parse_npy`], and I/O errors.
pub fn read_npy(path: &Path) -> Result<ArrayD<f64>> {
    let io = |e| DlmError::io("reading", path, e);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut head = Vec::new();
    (&mut file).take(12).read_to_end(&mut head).map_err(io)?;
    let bad = |m: String| DlmError::format(".npy array", path, m);
    let (_, end) = npy_prelude(&head, &bad)?;
    if end as u64 > len {
        return Err(bad(format!(
            "truncated header: it ends at byte {end}, the file holds {len} bytes"
        )));
    }
    // The first read may have taken data bytes already (a header shorter than two bytes).
    (&mut file)
        .take(end.saturating_sub(head.len()) as u64)
        .read_to_end(&mut head)
        .map_err(io)?;
    let h = parse_npy_header(&head, path)?;
    let present = usize::try_from(len - end as u64).unwrap_or(usize::MAX);
    let bytes = claimed_exactly(&h.shape, h.elem, present).map_err(claim_error(path))?;
    let mut data = Vec::with_capacity(bytes);
    data.extend_from_slice(&head[end.min(head.len())..]);
    let rest = bytes.saturating_sub(data.len());
    file.take(rest as u64).read_to_end(&mut data).map_err(io)?;
    if data.len() != bytes {
        return Err(bad(format!(
            "the file shrank while it was read: {} of {bytes} data bytes",
            data.len()
        )));
    }
    Ok(npy_values(&h, &data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(text: &str) -> Result<ArrayD<f64>> {
        parse_csv(text.as_bytes(), Path::new("t.csv"), CsvHeader::Auto)
    }

    fn err(text: &str) -> String {
        csv(text).unwrap_err().to_string()
    }

    #[test]
    fn csv_rows_are_two_dimensional() {
        assert_eq!(csv("5\n").unwrap().shape(), &[1, 1]);
        assert_eq!(csv("1,2,3\n").unwrap().shape(), &[1, 3]);
        assert_eq!(csv("1\n2\n3").unwrap().shape(), &[3, 1]);
        let a = csv("# c\nx,y\n1,2\r\n\n3;4\n").unwrap();
        assert_eq!(a.shape(), &[2, 2]);
        assert_eq!(a.as_slice().unwrap(), &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(csv("\u{feff}1\t2\n").unwrap().shape(), &[1, 2]);
    }

    #[test]
    fn a_first_line_that_is_not_numbers_is_a_header_only_if_it_looks_like_one() {
        for h in ["x", "a,b,c", "\"col 1\",'y'", "_id, value.2, t(s)"] {
            assert!(csv(&format!("{h}\n1\n")).is_ok(), "{h}");
        }
        let e = err("9x\n1\n2\n3\n");
        assert!(e.contains("line 1, column 1: '9x' is not a number"), "{e}");
        let e = err("a,9\n1,2\n");
        assert!(e.contains("line 1, column 1: 'a' is not a number"), "{e}");
        let e = err("nan\n1\n");
        assert!(
            e.contains("line 1, column 1: 'nan' is not a finite number"),
            "{e}"
        );
        // Only the first line can be a header.
        let e = err("x\n1\ny\n");
        assert!(e.contains("line 3, column 1: 'y' is not a number"), "{e}");
        // Declared: anything goes.
        let a = parse_csv(b"9x\n1\n", Path::new("t.csv"), CsvHeader::Present).unwrap();
        assert_eq!(a.shape(), &[1, 1]);
    }

    #[test]
    fn bad_values_name_line_column_and_text() {
        let e = err("1,2\n3,x4\n");
        assert!(e.contains("line 2, column 2: 'x4' is not a number"), "{e}");
        let e = err("5x\n");
        assert!(
            e.contains("'5x' is not a number") && !e.contains("empty"),
            "{e}"
        );
        let e = err("1,2\n3,inf\n");
        assert!(
            e.contains("line 2, column 2: 'inf' is not a finite number"),
            "{e}"
        );
        let e = err("1,-NaN\n");
        assert!(e.contains("column 2: '-NaN'"), "{e}");
        let e = err("1e400\n");
        assert!(e.contains("'1e400' overflows f64"), "{e}");
        let e = err("1,,2\n");
        assert!(e.contains("line 1, column 2: empty field"), "{e}");
        let e = err("1,2\n3\n");
        assert!(e.contains("line 2 has 1 values but line 1"), "{e}");
        let e = err(&format!("{}\n", "7".repeat(100) + "x"));
        assert!(e.contains("...'") && e.len() < 200, "{e}");
        let e = parse_csv(b"1\n\xff\n", Path::new("t.csv"), CsvHeader::Auto)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2: not UTF-8"), "{e}");
    }

    #[test]
    fn empty_files_say_why() {
        assert!(err("").contains("is empty"));
        assert!(err("# only a comment\n\n").contains("is empty"));
        let e = err("x,y\n");
        assert!(e.contains("line 1 ('x,y') was read as a header"), "{e}");
    }

    fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut h = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut v = NPY_MAGIC.to_vec();
        v.extend_from_slice(&[1, 0]);
        v.extend_from_slice(&(h.len() as u16).to_le_bytes());
        v.extend_from_slice(h.as_bytes());
        v.extend_from_slice(data);
        v
    }

    fn le(values: &[f64]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn npy_headers_are_parsed_and_checked_against_the_data() {
        let p = Path::new("a.npy");
        let a = parse_npy(&npy("<f8", false, "(2, 2)", &le(&[1.0, 2.0, 3.0, 4.0])), p).unwrap();
        assert_eq!(a.shape(), &[2, 2]);
        assert_eq!(a[[0, 1]], 2.0);
        let f = parse_npy(&npy("<f8", true, "(2, 2)", &le(&[1.0, 2.0, 3.0, 4.0])), p).unwrap();
        assert_eq!(f[[0, 1]], 3.0, "Fortran order");
        let be: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        let b = parse_npy(&npy(">f4", false, "(2,)", &be), p).unwrap();
        assert_eq!(b.as_slice().unwrap(), &[1.5, -2.0]);
        let s = parse_npy(&npy("<f8", false, "()", &le(&[7.0])), p).unwrap();
        assert_eq!(s.ndim(), 0);
        let e = parse_npy(
            &npy("<f8", false, "(100000, 100000)", &le(&[1.0, 2.0, 3.0, 4.0])),
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("header claims shape [100000, 100000] = 10000000000 values (80000000000 bytes), the file holds 32 bytes (4 values)"),
            "{e}"
        );
        let e = parse_npy(&npy("<i8", false, "(1,)", &le(&[1.0])), p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("dtype '<i8'"), "{e}");
        for bad in [
            "{'descr': '<f8', 'shape': (1,), }",
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'x': 1}",
            "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999999,), }",
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1,) } trailing",
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1,",
        ] {
            let mut v = NPY_MAGIC.to_vec();
            v.extend_from_slice(&[1, 0]);
            v.extend_from_slice(&(bad.len() as u16).to_le_bytes());
            v.extend_from_slice(bad.as_bytes());
            v.extend_from_slice(&le(&[1.0]));
            assert!(parse_npy(&v, p).is_err(), "{bad}");
        }
        let good = npy("<f8", false, "(3,)", &le(&[1.0, 2.0, 3.0]));
        for cut in 0..good.len() {
            assert!(parse_npy(&good[..cut], p).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn npy_files_are_checked_before_the_data_is_read() {
        let dir = std::env::temp_dir().join(format!("dlm-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("big.npy");
        std::fs::write(
            &p,
            npy("<f8", false, "(100000, 100000)", &le(&[1.0, 2.0, 3.0, 4.0])),
        )
        .unwrap();
        let e = read_array(&p, CsvHeader::Auto).unwrap_err().to_string();
        assert!(e.contains("the file holds 32 bytes (4 values)"), "{e}");
        let q = dir.join("ok.npy");
        std::fs::write(
            &q,
            npy("<f4", false, "(1, 2)", &[0, 0, 128, 63, 0, 0, 0, 64]),
        )
        .unwrap();
        let a = read_array(&q, CsvHeader::Auto).unwrap();
        assert_eq!(a.as_slice().unwrap(), &[1.0, 2.0]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
