//! Paths of the guest plugins built for the tests, and helpers shared by
//! the integration tests in this folder.

pub mod nats;

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

/// A `multipart/form-data` body of (name, file name, content type, bytes)
/// parts, and its content type.
pub fn multipart(parts: &[(&str, &str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "kefu-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, file, content_type, bytes) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\nContent-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
