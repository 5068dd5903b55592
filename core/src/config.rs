//! Component specifications: `name:key=value,key=value`.
//!
//! Every plugin factory receives a [`Config`]. Typed getters validate values, and
//! [`Config::finish`] refuses keys the factory did not read, so a typo such as
//! `matching:algoo=km` is an error rather than silently ignored.
//!
//! ```
//! use dlm_core::config::Spec;
//! let spec: Spec = "gumbel:scale=2.5".parse().unwrap();
//! assert_eq!(spec.name, "gumbel");
//! let cfg = spec.config();
//! assert_eq!(cfg.f64("scale", 1.0).unwrap(), 2.5);
//! cfg.finish().unwrap();
//! ```

use crate::error::{DlmError, Result};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// A component name plus its key=value options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The registered component name (e.g. `matching`).
    pub name: String,
    /// Options, in key order.
    pub options: BTreeMap<String, String>,
}

impl Spec {
    /// A spec with no options.
    pub fn named(name: impl Into<String>) -> Self {
        Spec {
            name: name.into(),
            options: BTreeMap::new(),
        }
    }

    /// Adds or replaces one option (builder style).
    pub fn with(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        self.options.insert(key.into(), value.to_string());
        self
    }

    /// The options as a [`Config`] for a factory.
    pub fn config(&self) -> Config {
        Config {
            component: self.name.clone(),
            options: self.options.clone(),
            used: RefCell::new(BTreeSet::new()),
        }
    }
}

impl FromStr for Spec {
    type Err = DlmError;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let (name, rest) = match s.split_once(':') {
            Some((n, r)) => (n.trim(), Some(r)),
            None => (s, None),
        };
        if name.is_empty() {
            return Err(DlmError::invalid(
                "component spec",
                format!("'{s}' has no name; write NAME or NAME:key=value,key=value"),
            ));
        }
        let mut options = BTreeMap::new();
        if let Some(rest) = rest {
            for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let Some((k, v)) = part.split_once('=') else {
                    return Err(DlmError::invalid(
                        format!("options of '{name}'"),
                        format!("'{part}' is not key=value; write {name}:key=value,key=value"),
                    ));
                };
                if options
                    .insert(k.trim().to_string(), v.trim().to_string())
                    .is_some()
                {
                    return Err(DlmError::invalid(
                        format!("options of '{name}'"),
                        format!("key '{}' given twice", k.trim()),
                    ));
                }
            }
        }
        Ok(Spec {
            name: name.to_string(),
            options,
        })
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for (i, (k, v)) in self.options.iter().enumerate() {
            write!(f, "{}{k}={v}", if i == 0 { ':' } else { ',' })?;
        }
        Ok(())
    }
}

/// Options handed to a plugin factory, with typed, validating getters.
#[derive(Debug)]
pub struct Config {
    component: String,
    options: BTreeMap<String, String>,
    used: RefCell<BTreeSet<String>>,
}

impl Config {
    /// An empty config for `component`.
    pub fn empty(component: &str) -> Self {
        Spec::named(component).config()
    }

    /// The component name this config is for.
    pub fn component(&self) -> &str {
        &self.component
    }

    /// The raw string value of `key`, if given.
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.used.borrow_mut().insert(key.to_string());
        self.options.get(key).map(String::as_str)
    }

    fn parse<T: FromStr>(&self, key: &str, default: T, what: &str) -> Result<T> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                DlmError::invalid(
                    format!("{}:{key}", self.component),
                    format!("'{v}' is not {what}"),
                )
            }),
        }
    }

    /// A finite floating-point option.
    pub fn f64(&self, key: &str, default: f64) -> Result<f64> {
        let v: f64 = self.parse(key, default, "a number")?;
        if !v.is_finite() {
            return Err(DlmError::invalid(
                format!("{}:{key}", self.component),
                "must be finite",
            ));
        }
        Ok(v)
    }

    /// A non-negative integer option.
    pub fn usize(&self, key: &str, default: usize) -> Result<usize> {
        self.parse(key, default, "a non-negative integer")
    }

    /// A 64-bit unsigned option (seeds).
    pub fn u64(&self, key: &str, default: u64) -> Result<u64> {
        self.parse(key, default, "a non-negative integer")
    }

    /// A boolean option (`true`/`false`).
    pub fn bool(&self, key: &str, default: bool) -> Result<bool> {
        self.parse(key, default, "true or false")
    }

    /// A string option restricted to `choices`.
    pub fn choice<'a>(&self, key: &str, default: &'a str, choices: &[&'a str]) -> Result<&'a str> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => choices.iter().copied().find(|c| *c == v).ok_or_else(|| {
                DlmError::invalid(
                    format!("{}:{key}", self.component),
                    format!("'{v}' is not one of {}", choices.join(", ")),
                )
            }),
        }
    }

    /// Refuses options that the factory never read (typos, options of another component).
    pub fn finish(&self) -> Result<()> {
        let used = self.used.borrow();
        let unknown: Vec<&str> = self
            .options
            .keys()
            .filter(|k| !used.contains(*k))
            .map(String::as_str)
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(DlmError::invalid(
                format!("options of '{}'", self.component),
                format!(
                    "unknown option(s) {}; accepted: {}",
                    unknown.join(", "),
                    if used.is_empty() {
                        "none".to_string()
                    } else {
                        used.iter().cloned().collect::<Vec<_>>().join(", ")
                    }
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_round_trips() {
        let s: Spec = "matching:algo=km,scale=3".parse().unwrap();
        assert_eq!(s.name, "matching");
        assert_eq!(s.to_string(), "matching:algo=km,scale=3");
        let c = s.config();
        assert_eq!(c.choice("algo", "lapjv", &["lapjv", "km"]).unwrap(), "km");
        assert!(c.finish().is_err(), "scale was never read");
        assert_eq!(c.f64("scale", 1.0).unwrap(), 3.0);
        c.finish().unwrap();
    }

    #[test]
    fn rejects_malformed() {
        assert!(":x=1".parse::<Spec>().is_err());
        assert!("a:x".parse::<Spec>().is_err());
        assert!("a:x=1,x=2".parse::<Spec>().is_err());
        let c = "a:x=nan".parse::<Spec>().unwrap().config();
        assert!(c.f64("x", 0.0).is_err());
        let c = "a:x=abc".parse::<Spec>().unwrap().config();
        assert!(c.usize("x", 0).is_err());
    }
}
