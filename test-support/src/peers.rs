//! Peer programs for interop tests: the cache directory and the venv with
//! the Python `ocpp` package, created once per machine under a file lock.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The Python packages of the interop venv.
pub const PYTHON_OCPP: &[&str] = &["ocpp==2.1.0", "websockets==17.4"];

/// `$EVPROTO_CACHE`, default `~/.cache/evproto`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("EVPROTO_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
                .join(".cache/evproto")
        })
}

/// The interop venv's python (with [`PYTHON_OCPP`]), creating the venv if
/// needed. Panics with the reason when Python or pip fail: the interop
/// tests cannot run without it.
pub fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| venv("venv-ocpp", PYTHON_OCPP))
}

/// The Python packages of the OCPI interop venv: extrawest-ocpi pins
/// pydantic 1 and FastAPI 0.101, so it gets a venv of its own.
pub const PYTHON_EXTRAWEST: &[&str] = &["extrawest-ocpi==2025.7.16", "uvicorn==0.54.0"];

/// The python of the extrawest-ocpi venv ([`PYTHON_EXTRAWEST`]).
pub fn python_extrawest() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| venv("venv-extrawest", PYTHON_EXTRAWEST))
}

/// The Python packages of the ISO 15118 interop venv: Josev (EcoG-io's
/// `iso15118`, DIN SPEC 70121 / ISO 15118-2 / -20 EVCC and SECC; its EXI
/// codec is the EXIficient jar it ships, run on Java 17). Its EVCC imports
/// `aiofile`, which the package does not declare, so it is listed here;
/// the ranged dependencies are pinned to the versions tested.
pub const PYTHON_JOSEV: &[&str] = &[
    "iso15118==0.31.2",
    "aiofile==3.12.3",
    "environs==14.6.0",
    "marshmallow==4.4.0",
    "psutil==6.1.1",
    "py4j==0.10.9.9",
];

/// The python of the Josev venv ([`PYTHON_JOSEV`]).
pub fn python_josev() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| venv("venv-josev", PYTHON_JOSEV))
}

/// A venv `name` under [`cache_dir`] with `packages`, created (under a
/// file lock, so parallel tests and processes share it) when missing or
/// when its package list changed. Returns its python.
pub fn venv(name: &str, packages: &[&str]) -> PathBuf {
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).expect("cache directory");
    let lock = std::fs::File::create(dir.join(format!("{name}.lock"))).expect("venv lock file");
    lock.lock().expect("venv lock");
    let venv = dir.join(name);
    let py = venv.join("bin/python");
    let marker = venv.join(".evproto-packages");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(&packages.join(" ")) {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "python3 -m venv failed");
        let ok = Command::new(&py)
            .args(["-m", "pip", "install", "-q"])
            .args(packages)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "pip install {packages:?} failed");
        std::fs::write(&marker, packages.join(" ")).expect("venv marker");
    }
    py
}
