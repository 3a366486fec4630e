//! Paths of the guest plugins built for the tests, and helpers shared by
//! the integration tests in this folder.

/// Guest component files, built once by `build.rs`.
pub mod wasm {
    include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
}

/// The repository root.
pub fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A file under `examples/`.
pub fn example(path: &str) -> std::path::PathBuf {
    root().join("examples").join(path)
}
