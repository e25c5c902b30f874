//! Generates the gRPC types from `proto/xo/*.proto` with protox (a pure-Rust
//! protobuf compiler), so building xo never needs a `protoc` binary.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/xo/partition.proto", "proto/xo/coordinator.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // Kept beside the generated code so the servers can offer gRPC reflection.
    std::fs::write(out_dir.join("xo_descriptor.bin"), prost::Message::encode_to_vec(&descriptors))?;
    tonic_prost_build::configure()
        // Record batches travel as `Bytes` so a payload is never copied between
        // the socket, the log and the reader.
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
