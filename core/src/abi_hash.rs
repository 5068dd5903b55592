//! The ABI fingerprint: a hash of what crosses the plugin boundary.
//!
//! `build.rs` compiles this file too (through `#[path]`), hashes the plugin-facing sources
//! ([`BOUNDARY_FILES`]), the `rustc` version and the `ndarray` requirement with
//! [`fingerprint`], and hands the result to the crate as
//! [`ABI_FINGERPRINT`](crate::plugin::ABI_FINGERPRINT). The crate compiles it as a module as
//! well so that the normaliser can be unit-tested.
//!
//! # Normalisation
//! Sources are hashed after [`normalise`], so that edits to comments and layout do not force
//! plugins to be rebuilt:
//! * line comments (`//`, including the doc comments `///` and `//!`) and block comments
//!   (`/* */`, nested, including `/** */` and `/*! */`) are removed;
//! * whitespace between tokens is dropped, except that a single space is kept between two
//!   word characters (letters, digits, `_`), where it separates tokens (`fn name`);
//! * string literals (`"..."` with backslash escapes, `b"..."`, `c"..."`), raw strings
//!   (`r"..."`, `r#"..."#`, `br#"..."#`, ...) and character literals (`'"'`, `'\''`) are
//!   copied verbatim, so a `//` or `/*` inside them is not taken for a comment. A `'` that
//!   does not start a character literal is a lifetime or label and is copied as such.
//!
//! This is a lexer for exactly these cases, not a Rust parser: it needs no dependency, and
//! anything it does not recognise is hashed as written (the safe direction: a spurious
//! difference only asks for a rebuild).
//!
//! # Hash
//! FNV-1a with 128 bits (offset basis and prime from the FNV specification,
//! <http://www.isthe.com/chongo/tech/comp/fnv/>). It is not a cryptographic hash; it guards
//! against accidental mismatches, not forged plugins (a plugin is native code that the user
//! chose to load and could do anything anyway). Each step of FNV-1a is a bijection of the
//! state, so two inputs of equal length that differ in one byte always hash differently.

/// The `core/src` files whose content crosses the plugin boundary, in hashing order: the five
/// plugin traits and what their signatures use, the declaration and registrar.
pub const BOUNDARY_FILES: &[&str] = &[
    "structure.rs",
    "loss.rs",
    "noise.rs",
    "scorer.rs",
    "plugin.rs",
    "config.rs",
    "error.rs",
    "rng.rs",
    "gradient.rs",
];

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Removes comments and insignificant whitespace from Rust source text (see the
/// [module docs](self)).
pub fn normalise(src: &str) -> String {
    let s: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut space = false;
    // Pushes a token start, first restoring one space if it separates two words.
    fn start(out: &mut String, space: &mut bool, c: char) {
        if *space && out.chars().next_back().is_some_and(is_word) && is_word(c) {
            out.push(' ');
        }
        *space = false;
    }
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        let next = s.get(i + 1).copied();
        if c.is_whitespace() {
            space = true;
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < s.len() && s[i] != '\n' {
                i += 1;
            }
            space = true;
        } else if c == '/' && next == Some('*') {
            let mut depth = 0usize;
            while i < s.len() {
                if s[i] == '/' && s.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if s[i] == '*' && s.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            space = true;
        } else if c == '"' {
            start(&mut out, &mut space, c);
            i = copy_string(&s, i, &mut out);
        } else if c == '\'' {
            start(&mut out, &mut space, c);
            i = copy_quote(&s, i, &mut out);
        } else if is_word(c) {
            start(&mut out, &mut space, c);
            let begin = i;
            while i < s.len() && is_word(s[i]) {
                i += 1;
            }
            let word: String = s[begin..i].iter().collect();
            out.push_str(&word);
            if matches!(word.as_str(), "r" | "br" | "cr") {
                i = copy_raw_string(&s, i, &mut out);
            }
        } else {
            start(&mut out, &mut space, c);
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Copies the string literal that starts with the `"` at `i`; returns the index after it.
fn copy_string(s: &[char], mut i: usize, out: &mut String) -> usize {
    out.push(s[i]);
    i += 1;
    while i < s.len() {
        out.push(s[i]);
        match s[i] {
            '\\' if i + 1 < s.len() => {
                out.push(s[i + 1]);
                i += 2;
            }
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// Copies a character literal or a lifetime/label starting with the `'` at `i`; returns the
/// index after what was copied.
fn copy_quote(s: &[char], i: usize, out: &mut String) -> usize {
    let end = if s.get(i + 1) == Some(&'\\') {
        // '\n', '\'', '\\', '\x7f', '\u{..}': up to the closing quote after the escape.
        let mut j = i + 3;
        while j < s.len() && s[j] != '\'' && s[j] != '\n' {
            j += 1;
        }
        (j + 1).min(s.len())
    } else if s.get(i + 2) == Some(&'\'') {
        // 'x', including '"' and '/'.
        i + 3
    } else {
        // A lifetime or label: only the quote itself; the name is a word.
        i + 1
    };
    out.extend(&s[i..end]);
    end
}

/// After a `r`, `br` or `cr` word at `i`: copies a raw string literal if one starts here
/// (`#`* then `"`), otherwise nothing (a raw identifier `r#name` or a plain word).
fn copy_raw_string(s: &[char], i: usize, out: &mut String) -> usize {
    let mut j = i;
    while j < s.len() && s[j] == '#' {
        j += 1;
    }
    if s.get(j) != Some(&'"') {
        return i;
    }
    let hashes = j - i;
    j += 1;
    while j < s.len() {
        if s[j] == '"'
            && s[j + 1..]
                .iter()
                .take(hashes)
                .filter(|&&c| c == '#')
                .count()
                == hashes
        {
            j += 1 + hashes;
            break;
        }
        j += 1;
    }
    let j = j.min(s.len());
    out.extend(&s[i..j]);
    j
}

/// 128-bit FNV-1a of `bytes`, continuing from `state` (start with [`FNV_OFFSET`]).
pub fn fnv1a_128(mut state: u128, bytes: &[u8]) -> u128 {
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013B;
    for &b in bytes {
        state ^= u128::from(b);
        state = state.wrapping_mul(PRIME);
    }
    state
}

/// The 128-bit FNV offset basis, the initial state of [`fnv1a_128`].
pub const FNV_OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;

/// The fingerprint of a boundary: `sources` are `(file name, source text)` pairs, hashed after
/// [`normalise`]; `extra` are `(label, value)` pairs (the `rustc` version, the `ndarray`
/// requirement), hashed with surrounding whitespace trimmed. Every part is framed by its
/// label and NUL bytes, so that text cannot move from one part to the next unnoticed.
/// Returns 32 lower-case hex digits.
pub fn fingerprint(sources: &[(&str, &str)], extra: &[(&str, &str)]) -> String {
    let mut h = FNV_OFFSET;
    let mut part = |label: &str, value: &str| {
        h = fnv1a_128(h, label.as_bytes());
        h = fnv1a_128(h, &[0]);
        h = fnv1a_128(h, &(value.len() as u64).to_le_bytes());
        h = fnv1a_128(h, value.as_bytes());
        h = fnv1a_128(h, &[0]);
    };
    for (name, text) in sources {
        part(name, &normalise(text));
    }
    for (label, value) in extra {
        part(label, value.trim());
    }
    format!("{h:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRAIT: &str = r#"
//! Structures.
use crate::error::Result;

/// A solver.
pub trait StructuredArgmax: Send + Sync {
    /// The registered name.
    fn name(&self) -> &str;
    /* Block comment /* nested */ still a comment. */
    fn argmax(&self, out: &mut Vec<usize>) -> Result<()>;
    fn label(&self) -> &'static str {
        "a // b /* c */ d" // trailing comment
    }
}
"#;

    fn fp(src: &str) -> String {
        fingerprint(&[("structure.rs", src)], &[("rustc", "rustc 1.0.0")])
    }

    #[test]
    fn fnv_matches_the_reference_vectors() {
        // From the FNV reference implementation's test suite.
        assert_eq!(
            fnv1a_128(FNV_OFFSET, b""),
            0x6c62272e07bb014262b821756295c58d
        );
        assert_eq!(
            fnv1a_128(FNV_OFFSET, b"a"),
            0xd228cb696f1a8caf78912b704e4a8964
        );
    }

    #[test]
    fn comments_and_whitespace_do_not_change_the_fingerprint() {
        let edited = TRAIT
            .replace(
                "/// The registered name.",
                "/// The name it is registered under.\n    /// (Used in messages.)",
            )
            .replace(
                "//! Structures.",
                "//! Structured argmax solvers.\n//!\n//! More docs.",
            )
            .replace("// trailing comment", "")
            .replace("nested */ still", "nested */ is still")
            .replace("fn name(&self) -> &str;", "fn name( &self )->&str ;")
            .replace("    fn", "\n\n\tfn");
        assert_ne!(edited, TRAIT);
        assert_eq!(normalise(&edited), normalise(TRAIT));
        assert_eq!(fp(&edited), fp(TRAIT));
    }

    #[test]
    fn a_new_default_method_changes_the_fingerprint() {
        let edited = TRAIT.replace(
            "    /// The registered name.",
            "    /// New.\n    fn extra(&self) -> usize { 0 }\n    /// The registered name.",
        );
        assert_ne!(fp(&edited), fp(TRAIT));
    }

    #[test]
    fn code_and_extra_parts_change_the_fingerprint() {
        assert_ne!(fp(&TRAIT.replace("usize", "u32")), fp(TRAIT));
        assert_ne!(
            fingerprint(&[("structure.rs", TRAIT)], &[("rustc", "rustc 1.0.1")]),
            fp(TRAIT)
        );
        assert_ne!(
            fingerprint(&[("loss.rs", TRAIT)], &[("rustc", "rustc 1.0.0")]),
            fp(TRAIT)
        );
        // Words stay separated: `pub fn` is not `pubfn`.
        assert_ne!(normalise("pub fn f()"), normalise("pubfn f()"));
        assert_eq!(fp(TRAIT).len(), 32);
    }

    #[test]
    fn comment_markers_inside_literals_are_kept() {
        let n = normalise(TRAIT);
        assert!(n.contains(r#""a // b /* c */ d""#), "{n}");
        assert!(!n.contains("trailing comment"), "{n}");
        assert!(!n.contains("registered name"), "{n}");
        assert!(!n.contains("nested"), "{n}");
        // Changing the text after `//` inside a literal changes the fingerprint.
        assert_ne!(fp(&TRAIT.replace("a // b", "a // B")), fp(TRAIT));
        // Escaped quotes, raw strings, byte strings and character literals.
        let src = r###"let a = "x\" // y"; let b = r#"p "// q"#; let c = br"//"; let d = '"'; let e = '\''; let f = "//"; // gone"###;
        let n = normalise(src);
        assert!(n.contains(r#""x\" // y""#), "{n}");
        assert!(n.contains(r##"r#"p "// q"#"##), "{n}");
        assert!(n.contains(r#"br"//""#), "{n}");
        assert!(n.contains(r#"'"'"#), "{n}");
        assert!(n.contains(r#"'\''"#), "{n}");
        assert!(n.ends_with(r#"f="//";"#), "{n}");
        // Lifetimes are not character literals.
        assert_eq!(
            normalise("fn f<'a>(x: &'a str) -> &'a str { x } // c"),
            "fn f<'a>(x:&'a str)->&'a str{x}"
        );
        // A raw identifier is not a raw string.
        assert_eq!(normalise("let r#type = 1; // c"), "let r#type=1;");
    }
}
