//! Plugins: a registry of named factories, filled by built-in crates and by shared libraries
//! loaded at run time with `libloading`.
//!
//! # Writing a plugin
//! A plugin crate (`crate-type = ["cdylib", "rlib"]` or just `["cdylib"]`) writes one
//! `register` function and exports it with [`export_plugin!`](crate::export_plugin):
//!
//! ```
//! use dlm_core::plugin::Registrar;
//! use dlm_core::Result;
//!
//! fn register(r: &mut Registrar<'_>) -> Result<()> {
//!     // r.structure("my-structure", "what it solves", |cfg| MyStructure::from_config(cfg))?;
//!     let _ = r;
//!     Ok(())
//! }
//! dlm_core::export_plugin!(register);
//! # fn main() {}
//! ```
//!
//! The macro exports a [`PluginDeclaration`] under the symbol
//! `dlm_plugin_declaration_<crate name>` (the crate's library name, which is also the stem of
//! the built `lib<crate name>.so`), so that several plugins can be linked into one binary
//! without clashing.
//!
//! # Compatibility: the ABI fingerprint
//! Trait objects, `Result`s with [`DlmError`], [`Config`]s and `ndarray` views cross the
//! boundary as plain Rust types, so the plugin and the host must agree on their layout and on
//! the traits' vtables: a plugin built against a `dlm-core` with one more (default) trait
//! method calls the wrong functions. The host therefore refuses, **before** calling any plugin
//! code, a plugin whose [`ABI_FINGERPRINT`] differs from its own. `build.rs` derives the
//! fingerprint (a 128-bit FNV-1a hash, 32 hex digits, see [`abi_hash`](crate::abi_hash)) from:
//!
//! * the source text of the plugin-facing files of `dlm-core`: `structure.rs`, `loss.rs`,
//!   `noise.rs`, `scorer.rs`, `plugin.rs`, `config.rs`, `error.rs`, `rng.rs` and `gradient.rs`, with comments
//!   (doc comments included) and whitespace removed, so that documentation and formatting
//!   edits keep the fingerprint;
//! * the `rustc --version` of the compiler: Rust has no stable ABI, so plugin and host must be
//!   built by exactly the same compiler (a plugin from another compiler gets its own message);
//! * the `ndarray` requirement of `dlm-core`'s `Cargo.toml` (resolved through the workspace),
//!   since `ndarray` types cross the boundary.
//!
//! Any code change in those files (a new method, a changed signature, an added error variant,
//! a new field) and any compiler change force a rebuild of plugins. Changes elsewhere in
//! `dlm-core` (estimator, predictor, trainer, tasks, data loaders), comment edits and a
//! different `dlm-core` version string do not: the version is only shown in messages. The
//! fingerprint does not see the resolved `ndarray` patch version or build flags, so build
//! plugins with the dlm's `Cargo.lock` and without flags that change type layouts.
//!
//! The declaration's first field is a layout number ([`DECLARATION_LAYOUT`]) that keeps its
//! meaning in every version; from layout 2 on it is followed by the fingerprint, `dlm-core`
//! version and `rustc` version ([`DeclarationHeader`]), so that a host can always name both
//! sides. Plugins from before the fingerprint (layout 1) are refused with their versions.
//!
//! # Safety model
//! * Every object a plugin creates is wrapped (inside the plugin, by generic code of this
//!   module monomorphised there) so that a panic in plugin code becomes
//!   [`DlmError::PluginPanic`]: panics cannot unwind across two copies of the Rust runtime,
//!   so they are caught on the plugin's side. Methods that return plain values rather than a
//!   `Result` (`name`, `mean`, `variance`, `cdf`, `decode`, `num_params`, `params`, `grads`,
//!   `zero_grad`, `device`, `learns_sigma`, `uses_noise`, `initial_state`) cannot report an
//!   error and must not panic.
//! * Loaded libraries are never unloaded: objects from them may outlive the registry.

use crate::config::{Config, Spec};
use crate::error::{DlmError, Result};
use crate::gradient::{Batch, Estimate, EstimatorState, GradientEstimator, NoiseKey};
use crate::loss::{Loss, Target};
use crate::noise::NoiseModel;
use crate::rng::DlmRng;
use crate::scorer::Scorer;
use crate::structure::StructuredArgmax;
use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD};
use std::collections::BTreeMap;
use std::ffi::{c_char, CStr};
use std::fmt;
use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Layout version of [`PluginDeclaration`]: the value of its first field.
///
/// The first field is a `u32` with this meaning in every version (the first `dlm-core`s
/// called it the ABI version and wrote 1 there). From layout 2 on, the next three fields are
/// always the NUL-terminated fingerprint, `dlm-core` version and `rustc` version, so that a
/// host can name both sides even when the layouts differ.
pub const DECLARATION_LAYOUT: u32 = 2;
/// Fingerprint of the plugin binary interface of this build: 32 hex digits, a hash of the
/// plugin-facing sources of `dlm-core` (comments and whitespace ignored), the `rustc`
/// version and the `ndarray` requirement, derived by `build.rs` (see the
/// [module docs](crate::plugin#compatibility-the-abi-fingerprint)).
pub const ABI_FINGERPRINT: &str = env!("DLM_ABI_FINGERPRINT");
/// Version of `dlm-core` this binary was built with (informational: the
/// [`ABI_FINGERPRINT`] decides compatibility).
pub const CORE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// `rustc --version` of the compiler that built this copy of `dlm-core`.
pub const RUSTC_VERSION: &str = env!("DLM_RUSTC_VERSION");
#[doc(hidden)]
pub const ABI_FINGERPRINT_NUL: &str = concat!(env!("DLM_ABI_FINGERPRINT"), "\0");
#[doc(hidden)]
pub const CORE_VERSION_NUL: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
#[doc(hidden)]
pub const RUSTC_VERSION_NUL: &str = concat!(env!("DLM_RUSTC_VERSION"), "\0");
/// Prefix of the exported declaration symbol; the crate's library name follows it.
pub const DECLARATION_SYMBOL_PREFIX: &str = "dlm_plugin_declaration_";

/// The signature of a plugin's registration function.
pub type RegisterFn = fn(&mut Registrar<'_>) -> Result<()>;

/// The one item a plugin library exports.
///
/// The host reads the leading fields through [`DeclarationHeader`] (the first field alone
/// for layouts it does not know) and checks them before it trusts anything else.
#[repr(C)]
pub struct PluginDeclaration {
    /// [`DECLARATION_LAYOUT`] of the plugin's build.
    pub layout: u32,
    /// NUL-terminated [`ABI_FINGERPRINT`] of the plugin's build.
    pub abi_fingerprint: *const u8,
    /// NUL-terminated `dlm-core` version of the plugin's build.
    pub core_version: *const u8,
    /// NUL-terminated `rustc --version` of the plugin's build.
    pub rustc_version: *const u8,
    /// The registration function (called only after the fingerprints matched).
    pub register: RegisterFn,
}

/// The leading fields of a [`PluginDeclaration`], which keep their C layout and meaning in
/// every declaration layout from 2 on.
#[repr(C)]
pub struct DeclarationHeader {
    /// The declaration layout ([`DECLARATION_LAYOUT`]).
    pub layout: u32,
    /// NUL-terminated ABI fingerprint.
    pub abi_fingerprint: *const u8,
    /// NUL-terminated `dlm-core` version.
    pub core_version: *const u8,
    /// NUL-terminated `rustc --version`.
    pub rustc_version: *const u8,
}

/// The leading fields of the layout-1 declaration of the first `dlm-core`s (before the ABI
/// fingerprint), read only to name the old plugin's versions in the refusal.
#[repr(C)]
struct DeclarationV1Header {
    abi_version: u32,
    core_version: *const u8,
    rustc_version: *const u8,
}

// SAFETY: the declaration holds pointers to immutable, NUL-terminated string literals and a
// function pointer; sharing it between threads is sound.
unsafe impl Sync for PluginDeclaration {}

/// Exports a plugin's registration function (see the [module docs](crate::plugin)).
///
/// `export_plugin!(register)` declares this build's fingerprint and versions. The form
/// `export_plugin!(register, abi_fingerprint = "deadbeef")` declares another ABI
/// fingerprint; it exists only so that tests can build a deliberately incompatible plugin.
#[macro_export]
macro_rules! export_plugin {
    ($register:path) => {
        $crate::export_plugin!(@decl $register, $crate::plugin::ABI_FINGERPRINT_NUL);
    };
    ($register:path, abi_fingerprint = $fp:literal) => {
        $crate::export_plugin!(@decl $register, concat!($fp, "\0"));
    };
    (@decl $register:path, $fingerprint:expr) => {
        #[doc(hidden)]
        #[export_name = concat!("dlm_plugin_declaration_", env!("CARGO_CRATE_NAME"))]
        pub static __DLM_PLUGIN_DECLARATION: $crate::plugin::PluginDeclaration =
            $crate::plugin::PluginDeclaration {
                layout: $crate::plugin::DECLARATION_LAYOUT,
                abi_fingerprint: $fingerprint.as_ptr(),
                core_version: $crate::plugin::CORE_VERSION_NUL.as_ptr(),
                rustc_version: $crate::plugin::RUSTC_VERSION_NUL.as_ptr(),
                register: {
                    fn __dlm_register(
                        r: &mut $crate::plugin::Registrar<'_>,
                    ) -> $crate::Result<()> {
                        $crate::plugin::catch_panic("plugin registration", || $register(r))
                    }
                    __dlm_register
                },
            };
    };
}

/// Reads a NUL-terminated string that a declaration points to.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string that lives as long as the library.
unsafe fn read_cstr(p: *const u8) -> String {
    if p.is_null() {
        return "<missing>".into();
    }
    // SAFETY: non-null, NUL-terminated by the caller's contract.
    unsafe { CStr::from_ptr(p as *const c_char) }
        .to_string_lossy()
        .into_owned()
}

/// Checks a plugin's declaration against this build and returns its registration function,
/// or the reason to refuse the plugin. Nothing of the plugin is called.
///
/// # Safety
/// `decl` points to a plugin's exported declaration: a `u32` layout number followed by the
/// fields of that layout (layout 1: ABI version, core version, rustc version, register;
/// layout 2 and later: as [`DeclarationHeader`]).
unsafe fn check_declaration(decl: *const u8) -> std::result::Result<RegisterFn, String> {
    let rebuild = format!(
        "rebuild the plugin against this dlm's dlm-core ({CORE_VERSION}, ABI fingerprint \
         {ABI_FINGERPRINT}) with the same compiler ('{RUSTC_VERSION}')"
    );
    // SAFETY: every layout starts with a u32.
    let layout = unsafe { decl.cast::<u32>().read() };
    if layout == 1 {
        // SAFETY: layout 1 starts with DeclarationV1Header.
        let (core, rustc) = unsafe {
            let h = &*decl.cast::<DeclarationV1Header>();
            debug_assert_eq!(h.abi_version, 1);
            (read_cstr(h.core_version), read_cstr(h.rustc_version))
        };
        return Err(format!(
            "incompatible plugin: it was built against dlm-core {core} with '{rustc}', which \
             predates the ABI fingerprint (declaration layout 1; this dlm reads layout \
             {DECLARATION_LAYOUT}); {rebuild}"
        ));
    }
    if layout < 2 {
        return Err(format!(
            "incompatible plugin: unknown declaration layout {layout} (this dlm reads layout \
             {DECLARATION_LAYOUT}); {rebuild}"
        ));
    }
    // SAFETY: layouts from 2 on start with DeclarationHeader.
    let (fingerprint, core, rustc) = unsafe {
        let h = &*decl.cast::<DeclarationHeader>();
        (
            read_cstr(h.abi_fingerprint),
            read_cstr(h.core_version),
            read_cstr(h.rustc_version),
        )
    };
    let sides = format!(
        "the plugin was built against dlm-core {core} (ABI fingerprint {fingerprint}) with \
         '{rustc}', this dlm uses dlm-core {CORE_VERSION} (ABI fingerprint {ABI_FINGERPRINT}) \
         built with '{RUSTC_VERSION}'"
    );
    if rustc != RUSTC_VERSION {
        return Err(format!(
            "incompatible plugin: built with another compiler: {sides}. Plugins must be built \
             with exactly the same rustc as the dlm that loads them (Rust has no stable ABI); \
             {rebuild}"
        ));
    }
    if fingerprint != ABI_FINGERPRINT {
        return Err(format!(
            "incompatible plugin: ABI fingerprint mismatch (the plugin-facing part of dlm-core \
             differs): {sides}; {rebuild}"
        ));
    }
    if layout != DECLARATION_LAYOUT {
        return Err(format!(
            "incompatible plugin: declaration layout {layout}, but this dlm reads layout \
             {DECLARATION_LAYOUT}: {sides}; {rebuild}"
        ));
    }
    // SAFETY: same layout and fingerprint: `decl` is a PluginDeclaration of this build.
    Ok(unsafe { (*decl.cast::<PluginDeclaration>()).register })
}

/// Runs `f`, turning a panic into [`DlmError::PluginPanic`] with `context`.
///
/// Generic, so it is compiled into (and catches with the runtime of) the calling crate.
pub fn catch_panic<T>(context: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            Err(DlmError::PluginPanic {
                context: context.to_string(),
                message,
            })
        }
    }
}

/// Where a component came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Linked into the running binary (the crate name).
    Builtin(String),
    /// Loaded from a shared library.
    Library(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Builtin(c) => write!(f, "built-in ({c})"),
            Origin::Library(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The five kinds of component a plugin can register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A [`StructuredArgmax`].
    Structure,
    /// A [`NoiseModel`].
    Noise,
    /// A [`Loss`].
    Loss,
    /// A [`Scorer`].
    Scorer,
    /// A [`GradientEstimator`].
    Estimator,
}

impl Kind {
    /// Lower-case name used in messages and listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Structure => "structure",
            Kind::Noise => "noise",
            Kind::Loss => "loss",
            Kind::Scorer => "scorer",
            Kind::Estimator => "estimator",
        }
    }
}

type Factory<T> = Arc<dyn Fn(&Config) -> Result<Box<T>> + Send + Sync>;

struct Entry<T: ?Sized> {
    description: String,
    origin: Origin,
    factory: Factory<T>,
}

/// One registered component, as listed by `dlm plugins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentInfo {
    /// What it is.
    pub kind: Kind,
    /// Its registered name.
    pub name: String,
    /// One line on what it does and its options.
    pub description: String,
    /// Where it came from.
    pub origin: Origin,
}

/// All registered components, by kind and name.
#[derive(Default)]
pub struct Registry {
    structures: BTreeMap<String, Entry<dyn StructuredArgmax>>,
    noises: BTreeMap<String, Entry<dyn NoiseModel>>,
    losses: BTreeMap<String, Entry<dyn Loss>>,
    scorers: BTreeMap<String, Entry<dyn Scorer>>,
    estimators: BTreeMap<String, Entry<dyn GradientEstimator>>,
    libraries: Vec<PathBuf>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("components", &self.list())
            .field("libraries", &self.libraries)
            .finish()
    }
}

/// Libraries stay loaded for the life of the process (objects may outlive any registry).
static LOADED: Mutex<Vec<Arc<libloading::Library>>> = Mutex::new(Vec::new());

fn insert<T: ?Sized>(
    map: &mut BTreeMap<String, Entry<T>>,
    kind: Kind,
    name: &str,
    entry: Entry<T>,
) -> Result<()> {
    if let Some(first) = map.get(name) {
        return Err(DlmError::DuplicateComponent {
            kind: kind.as_str(),
            name: name.to_string(),
            first: first.origin.to_string(),
            second: entry.origin.to_string(),
        });
    }
    map.insert(name.to_string(), entry);
    Ok(())
}

fn create<T: ?Sized>(map: &BTreeMap<String, Entry<T>>, kind: Kind, spec: &Spec) -> Result<Box<T>> {
    let entry = map
        .get(&spec.name)
        .ok_or_else(|| DlmError::UnknownComponent {
            kind: kind.as_str(),
            name: spec.name.clone(),
            available: map.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
    let cfg = spec.config();
    let obj = (entry.factory)(&cfg)?;
    cfg.finish()?;
    Ok(obj)
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a plugin linked into this binary through its registration function.
    pub fn register_builtin(&mut self, crate_name: &str, register: RegisterFn) -> Result<()> {
        let mut r = Registrar {
            registry: self,
            origin: Origin::Builtin(crate_name.to_string()),
        };
        register(&mut r)
    }

    /// Loads a plugin library, checks its ABI fingerprint and registers its components.
    ///
    /// A library whose [`ABI_FINGERPRINT`] or `rustc` version differs from this build's (or
    /// whose declaration has another layout) is refused before any of its code runs, with a
    /// message naming both sides' fingerprints, `dlm-core` versions and `rustc` versions. A
    /// different `dlm-core` version alone is not a reason to refuse.
    ///
    /// `path` is a file path, never a name for the system loader to search: a relative path
    /// (even a bare `libfoo.so`) is taken relative to the current directory. A path that does
    /// not exist is reported with its absolute form; a directory is refused (directories
    /// belong in [`load_path_list`](Registry::load_path_list), i.e. `DLM_PLUGIN_PATH`).
    pub fn load_library(&mut self, path: &Path) -> Result<()> {
        let err = |message: String| DlmError::Plugin {
            path: path.to_path_buf(),
            message,
        };
        // The library is loaded from this absolute path: a bare file name handed to the system
        // loader would be looked up on its search path instead of in the current directory
        // (and could load another library of that name).
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        match std::fs::metadata(path) {
            Err(_) => {
                return Err(err(format!(
                    "no such file: {}; pass the path of a built plugin (e.g. target/release/libdlm_plugin_x.so)",
                    absolute.display()
                )))
            }
            Ok(m) if m.is_dir() => {
                return Err(err(format!(
                    "{} is a directory, not a plugin library; pass the library file (lib<name>.so), or list the directory in DLM_PLUGIN_PATH to load every lib*.so in it",
                    absolute.display()
                )))
            }
            Ok(_) => {}
        }
        // SAFETY: loading a library runs its initialisers; a dlm plugin has none beyond what
        // Rust emits. This is the documented risk of loading native plugins.
        let lib = unsafe { libloading::Library::new(&absolute) }.map_err(|e| {
            let detail = std::error::Error::source(&e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            err(format!(
                "cannot load the library ({e}{detail}); check that it is a shared library built for this machine and that the libraries it needs are on the loader path"
            ))
        })?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let crate_name = stem.strip_prefix("lib").unwrap_or(stem).replace('-', "_");
        let symbol = format!("{DECLARATION_SYMBOL_PREFIX}{crate_name}\0");
        // SAFETY: the symbol, if present, is the address of a plugin's declaration static; it
        // is read field by field, as far as its layout allows, before anything is trusted.
        let decl: *const u8 = unsafe {
            let sym = lib.get::<*const u8>(symbol.as_bytes()).map_err(|_| {
                err(format!(
                    "not a dlm plugin: symbol '{}' not found. A plugin exports it with \
                         dlm_core::export_plugin!(register); keep the library's file name \
                         (lib<crate name>.so) as cargo built it",
                    symbol.trim_end_matches('\0')
                ))
            })?;
            *sym
        };
        // SAFETY: `decl` is the exported declaration (see above).
        let register = unsafe { check_declaration(decl) }.map_err(err)?;
        let lib = Arc::new(lib);
        LOADED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(lib.clone());
        let mut r = Registrar {
            registry: self,
            origin: Origin::Library(path.to_path_buf()),
        };
        register(&mut r).map_err(|e| err(format!("registration failed: {e}")))?;
        self.libraries.push(path.to_path_buf());
        Ok(())
    }

    /// Loads every plugin named in a `:`-separated list of files and directories (as in the
    /// `DLM_PLUGIN_PATH` variable); a directory contributes every `*.so` file in it whose
    /// name starts with `lib`, in name order.
    pub fn load_path_list(&mut self, list: &str) -> Result<Vec<PathBuf>> {
        let mut loaded = Vec::new();
        for part in list.split(':').filter(|p| !p.trim().is_empty()) {
            let p = Path::new(part.trim());
            if p.is_dir() {
                let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                    .map_err(|e| DlmError::io("reading plugin directory", p, e))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|f| {
                        f.extension().is_some_and(|x| x == "so")
                            && f.file_name()
                                .and_then(|n| n.to_str())
                                .is_some_and(|n| n.starts_with("lib"))
                    })
                    .collect();
                files.sort();
                for f in files {
                    self.load_library(&f)?;
                    loaded.push(f);
                }
            } else {
                self.load_library(p)?;
                loaded.push(p.to_path_buf());
            }
        }
        Ok(loaded)
    }

    /// Creates the structure `spec` names.
    pub fn structure(&self, spec: &Spec) -> Result<Box<dyn StructuredArgmax>> {
        create(&self.structures, Kind::Structure, spec)
    }

    /// Creates the noise model `spec` names.
    pub fn noise(&self, spec: &Spec) -> Result<Box<dyn NoiseModel>> {
        create(&self.noises, Kind::Noise, spec)
    }

    /// Creates the loss `spec` names.
    pub fn loss(&self, spec: &Spec) -> Result<Box<dyn Loss>> {
        create(&self.losses, Kind::Loss, spec)
    }

    /// Creates the scorer `spec` names.
    pub fn scorer(&self, spec: &Spec) -> Result<Box<dyn Scorer>> {
        create(&self.scorers, Kind::Scorer, spec)
    }

    /// Creates the gradient estimator `spec` names (e.g. `dlm:epsilon=-12`, `fy:draws=10`).
    pub fn estimator(&self, spec: &Spec) -> Result<Box<dyn GradientEstimator>> {
        create(&self.estimators, Kind::Estimator, spec)
    }

    /// The registered names of one kind.
    pub fn names(&self, kind: Kind) -> Vec<String> {
        match kind {
            Kind::Structure => self.structures.keys().cloned().collect(),
            Kind::Noise => self.noises.keys().cloned().collect(),
            Kind::Loss => self.losses.keys().cloned().collect(),
            Kind::Scorer => self.scorers.keys().cloned().collect(),
            Kind::Estimator => self.estimators.keys().cloned().collect(),
        }
    }

    /// Every registered component, by kind then name.
    pub fn list(&self) -> Vec<ComponentInfo> {
        fn add<T: ?Sized>(
            out: &mut Vec<ComponentInfo>,
            kind: Kind,
            map: &BTreeMap<String, Entry<T>>,
        ) {
            out.extend(map.iter().map(|(n, e)| ComponentInfo {
                kind,
                name: n.clone(),
                description: e.description.clone(),
                origin: e.origin.clone(),
            }));
        }
        let mut out = Vec::new();
        add(&mut out, Kind::Structure, &self.structures);
        add(&mut out, Kind::Noise, &self.noises);
        add(&mut out, Kind::Loss, &self.losses);
        add(&mut out, Kind::Scorer, &self.scorers);
        add(&mut out, Kind::Estimator, &self.estimators);
        out
    }

    /// The plugin libraries loaded into this registry.
    pub fn libraries(&self) -> &[PathBuf] {
        &self.libraries
    }
}

/// Handed to a plugin's registration function to add its components.
///
/// The methods are generic so that the panic guards around the plugin's objects are compiled
/// into the plugin itself.
pub struct Registrar<'a> {
    registry: &'a mut Registry,
    origin: Origin,
}

impl Registrar<'_> {
    /// Registers a structure under `name`.
    pub fn structure<S, F>(&mut self, name: &str, description: &str, factory: F) -> Result<()>
    where
        S: StructuredArgmax + 'static,
        F: Fn(&Config) -> Result<S> + Send + Sync + 'static,
    {
        let ctx = format!("structure '{name}'");
        let factory: Factory<dyn StructuredArgmax> = Arc::new(move |c: &Config| {
            let s = catch_panic(&ctx, || factory(c))?;
            Ok(Box::new(Guarded(s)) as Box<dyn StructuredArgmax>)
        });
        let entry = Entry {
            description: description.into(),
            origin: self.origin.clone(),
            factory,
        };
        insert(&mut self.registry.structures, Kind::Structure, name, entry)
    }

    /// Registers a noise model under `name`.
    pub fn noise<N, F>(&mut self, name: &str, description: &str, factory: F) -> Result<()>
    where
        N: NoiseModel + 'static,
        F: Fn(&Config) -> Result<N> + Send + Sync + 'static,
    {
        let ctx = format!("noise '{name}'");
        let factory: Factory<dyn NoiseModel> = Arc::new(move |c: &Config| {
            let s = catch_panic(&ctx, || factory(c))?;
            Ok(Box::new(Guarded(s)) as Box<dyn NoiseModel>)
        });
        let entry = Entry {
            description: description.into(),
            origin: self.origin.clone(),
            factory,
        };
        insert(&mut self.registry.noises, Kind::Noise, name, entry)
    }

    /// Registers a loss under `name`.
    pub fn loss<L, F>(&mut self, name: &str, description: &str, factory: F) -> Result<()>
    where
        L: Loss + 'static,
        F: Fn(&Config) -> Result<L> + Send + Sync + 'static,
    {
        let ctx = format!("loss '{name}'");
        let factory: Factory<dyn Loss> = Arc::new(move |c: &Config| {
            let s = catch_panic(&ctx, || factory(c))?;
            Ok(Box::new(Guarded(s)) as Box<dyn Loss>)
        });
        let entry = Entry {
            description: description.into(),
            origin: self.origin.clone(),
            factory,
        };
        insert(&mut self.registry.losses, Kind::Loss, name, entry)
    }

    /// Registers a scorer under `name`.
    pub fn scorer<S, F>(&mut self, name: &str, description: &str, factory: F) -> Result<()>
    where
        S: Scorer + 'static,
        F: Fn(&Config) -> Result<S> + Send + Sync + 'static,
    {
        let ctx = format!("scorer '{name}'");
        let factory: Factory<dyn Scorer> = Arc::new(move |c: &Config| {
            let s = catch_panic(&ctx, || factory(c))?;
            Ok(Box::new(Guarded(s)) as Box<dyn Scorer>)
        });
        let entry = Entry {
            description: description.into(),
            origin: self.origin.clone(),
            factory,
        };
        insert(&mut self.registry.scorers, Kind::Scorer, name, entry)
    }

    /// Registers a gradient estimator under `name`.
    pub fn estimator<E, F>(&mut self, name: &str, description: &str, factory: F) -> Result<()>
    where
        E: GradientEstimator + 'static,
        F: Fn(&Config) -> Result<E> + Send + Sync + 'static,
    {
        let ctx = format!("estimator '{name}'");
        let factory: Factory<dyn GradientEstimator> = Arc::new(move |c: &Config| {
            let s = catch_panic(&ctx, || factory(c))?;
            Ok(Box::new(Guarded(s)) as Box<dyn GradientEstimator>)
        });
        let entry = Entry {
            description: description.into(),
            origin: self.origin.clone(),
            factory,
        };
        insert(&mut self.registry.estimators, Kind::Estimator, name, entry)
    }
}

/// Wraps a plugin object so that panics in its methods become [`DlmError::PluginPanic`].
struct Guarded<T>(T);

impl<T: StructuredArgmax> StructuredArgmax for Guarded<T> {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn check_shape(&self, shape: &[usize]) -> Result<()> {
        catch_panic("structure check_shape", || self.0.check_shape(shape))
    }
    fn argmax(&self, theta: ArrayViewD<'_, f64>, out: &mut Vec<usize>) -> Result<()> {
        catch_panic("structure argmax", || self.0.argmax(theta, out))
    }
    fn argmax_pair(
        &self,
        theta: ArrayViewD<'_, f64>,
        theta_aug: ArrayViewD<'_, f64>,
        out: &mut Vec<usize>,
        out_aug: &mut Vec<usize>,
    ) -> Result<()> {
        catch_panic("structure argmax_pair", || {
            self.0.argmax_pair(theta, theta_aug, out, out_aug)
        })
    }
    fn argmax_loss_augmented(
        &self,
        theta: ArrayViewD<'_, f64>,
        loss: &dyn Loss,
        target: &Target,
        eps: f64,
        out: &mut Vec<usize>,
    ) -> Result<()> {
        catch_panic("structure argmax_loss_augmented", || {
            self.0.argmax_loss_augmented(theta, loss, target, eps, out)
        })
    }
    fn decode(&self, shape: &[usize], active: &[usize]) -> Vec<usize> {
        self.0.decode(shape, active)
    }
    fn enumerate(&self, shape: &[usize]) -> Result<Option<Vec<Vec<usize>>>> {
        catch_panic("structure enumerate", || self.0.enumerate(shape))
    }
}

impl<T: NoiseModel> NoiseModel for Guarded<T> {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn sample(&self, rng: &mut DlmRng, out: &mut [f64]) -> Result<()> {
        catch_panic("noise sample", || self.0.sample(rng, out))
    }
    fn mean(&self) -> f64 {
        self.0.mean()
    }
    fn variance(&self) -> f64 {
        self.0.variance()
    }
    fn cdf(&self, x: f64) -> Option<f64> {
        self.0.cdf(x)
    }
}

impl<T: Loss> Loss for Guarded<T> {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn value(&self, target: &Target, shape: &[usize], active: &[usize]) -> Result<f64> {
        catch_panic("loss value", || self.0.value(target, shape, active))
    }
    fn linear_form(&self, target: &Target, out: ArrayViewMutD<'_, f64>) -> Result<Option<f64>> {
        catch_panic("loss linear_form", || self.0.linear_form(target, out))
    }
}

impl<T: Scorer> Scorer for Guarded<T> {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn output_shape(&self, input_shape: &[usize]) -> Result<Vec<usize>> {
        catch_panic("scorer output_shape", || self.0.output_shape(input_shape))
    }
    fn forward(&mut self, x: ArrayViewD<'_, f64>, train: bool) -> Result<ArrayD<f64>> {
        catch_panic("scorer forward", || self.0.forward(x, train))
    }
    fn backward(&mut self, grad_out: ArrayViewD<'_, f64>) -> Result<()> {
        catch_panic("scorer backward", || self.0.backward(grad_out))
    }
    fn step(&mut self) -> Result<()> {
        catch_panic("scorer step", || self.0.step())
    }
    fn zero_grad(&mut self) {
        self.0.zero_grad()
    }
    fn num_params(&self) -> usize {
        self.0.num_params()
    }
    fn params(&self) -> Vec<f64> {
        self.0.params()
    }
    fn set_params(&mut self, params: &[f64]) -> Result<()> {
        catch_panic("scorer set_params", || self.0.set_params(params))
    }
    fn grads(&self) -> Vec<f64> {
        self.0.grads()
    }
    fn save(&self, w: &mut dyn Write) -> Result<()> {
        catch_panic("scorer save", || self.0.save(w))
    }
    fn load(&mut self, r: &mut dyn Read) -> Result<()> {
        catch_panic("scorer load", || self.0.load(r))
    }
    fn device(&self) -> String {
        self.0.device()
    }
    fn to_device(&mut self, device: &str) -> Result<()> {
        catch_panic("scorer to_device", || self.0.to_device(device))
    }
}

impl<T: GradientEstimator> GradientEstimator for Guarded<T> {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn learns_sigma(&self) -> bool {
        self.0.learns_sigma()
    }
    fn uses_noise(&self) -> bool {
        self.0.uses_noise()
    }
    fn initial_state(&self) -> EstimatorState {
        self.0.initial_state()
    }
    fn estimate(
        &self,
        state: &mut EstimatorState,
        structure: &dyn StructuredArgmax,
        noise: &dyn NoiseModel,
        loss: &dyn Loss,
        batch: &Batch<'_>,
        key: NoiseKey,
    ) -> Result<Estimate> {
        catch_panic("estimator estimate", || {
            self.0.estimate(state, structure, noise, loss, batch, key)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(_: &mut Registrar<'_>) -> Result<()> {
        Ok(())
    }

    fn declaration(
        fingerprint: &'static str,
        core: &'static str,
        rustc: &'static str,
    ) -> PluginDeclaration {
        PluginDeclaration {
            layout: DECLARATION_LAYOUT,
            abi_fingerprint: fingerprint.as_ptr(),
            core_version: core.as_ptr(),
            rustc_version: rustc.as_ptr(),
            register,
        }
    }

    fn check(d: &PluginDeclaration) -> std::result::Result<RegisterFn, String> {
        // SAFETY: a declaration of this build's layout with NUL-terminated strings.
        unsafe { check_declaration((d as *const PluginDeclaration).cast()) }
    }

    #[test]
    fn the_fingerprint_is_32_hex_digits() {
        assert_eq!(ABI_FINGERPRINT.len(), 32);
        assert!(ABI_FINGERPRINT.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(ABI_FINGERPRINT_NUL.trim_end_matches('\0'), ABI_FINGERPRINT);
    }

    #[test]
    fn this_builds_declaration_is_accepted() {
        let d = declaration(ABI_FINGERPRINT_NUL, CORE_VERSION_NUL, RUSTC_VERSION_NUL);
        assert!(check(&d).is_ok());
    }

    #[test]
    fn another_core_version_with_the_same_fingerprint_is_accepted() {
        let d = declaration(ABI_FINGERPRINT_NUL, "9.9.9\0", RUSTC_VERSION_NUL);
        assert!(check(&d).is_ok());
    }

    #[test]
    fn another_fingerprint_is_refused_naming_both_sides() {
        let d = declaration("deadbeef\0", "9.9.9\0", RUSTC_VERSION_NUL);
        let msg = check(&d).expect_err("refused");
        for part in [
            "ABI fingerprint mismatch",
            "ABI fingerprint deadbeef",
            &format!("ABI fingerprint {ABI_FINGERPRINT}"),
            "dlm-core 9.9.9",
            &format!("dlm-core {CORE_VERSION}"),
            RUSTC_VERSION,
            "rebuild the plugin",
        ] {
            assert!(msg.contains(part), "'{part}' missing: {msg}");
        }
    }

    #[test]
    fn another_compiler_is_refused_with_its_own_message() {
        let d = declaration("deadbeef\0", CORE_VERSION_NUL, "rustc 1.0.0 (old)\0");
        let msg = check(&d).expect_err("refused");
        assert!(msg.contains("another compiler"), "{msg}");
        assert!(msg.contains("'rustc 1.0.0 (old)'"), "{msg}");
        assert!(msg.contains(&format!("'{RUSTC_VERSION}'")), "{msg}");
        // Even with a (forged) matching fingerprint.
        let d = declaration(ABI_FINGERPRINT_NUL, CORE_VERSION_NUL, "rustc 1.0.0 (old)\0");
        assert!(check(&d).is_err());
    }

    #[test]
    fn layout_1_and_unknown_layouts_are_refused() {
        let v1 = DeclarationV1Header {
            abi_version: 1,
            core_version: c"0.1.0".as_ptr().cast(),
            rustc_version: RUSTC_VERSION_NUL.as_ptr(),
        };
        // SAFETY: a layout-1 header with NUL-terminated strings.
        let msg = unsafe { check_declaration((&v1 as *const DeclarationV1Header).cast()) }
            .expect_err("refused");
        assert!(msg.contains("layout 1"), "{msg}");
        assert!(msg.contains("dlm-core 0.1.0"), "{msg}");
        assert!(msg.contains("rebuild the plugin"), "{msg}");
        let zero = 0u32;
        // SAFETY: layout 0 is refused after reading the first u32 only.
        let msg = unsafe { check_declaration((&zero as *const u32).cast()) }.expect_err("refused");
        assert!(msg.contains("unknown declaration layout 0"), "{msg}");
        // A later layout with the same leading fields is refused, naming both sides.
        let mut d = declaration(ABI_FINGERPRINT_NUL, CORE_VERSION_NUL, RUSTC_VERSION_NUL);
        d.layout = DECLARATION_LAYOUT + 1;
        let msg = check(&d).expect_err("refused");
        assert!(
            msg.contains(&format!("declaration layout {}", DECLARATION_LAYOUT + 1)),
            "{msg}"
        );
    }
}
