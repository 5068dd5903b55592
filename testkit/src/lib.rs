//! # dlm-testkit
//!
//! The checks every `dlm` component should pass, as a library: use it from a plugin's own
//! `cargo test`, or through `dlm verify --structure SPEC --loss SPEC --noise SPEC`.
//!
//! * [`theory`]: the Gumbel-max identities and the DLM gradient against finite differences,
//!   as [`Check`](theory::Check)s with tolerances derived from the sample size.

pub mod theory;
