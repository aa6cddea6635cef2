//! Compiles `proto/` with protox (pure Rust, no `protoc`) and generates the tonic/prost code.
//! The encoded descriptor set keeps source info so grpcurl `describe` shows every comment.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "hotplane/v1/common.proto",
    "hotplane/v1/patterns.proto",
    "hotplane/v1/hot_reload.proto",
    "hotplane/v1/drain.proto",
    "hotplane/v1/audit.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::Compiler::new(["proto"])?
        .include_source_info(true)
        .include_imports(true)
        .open_files(PROTOS)?
        .file_descriptor_set();
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("hotplane_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds.clone())?;
    // The server side of the services once more, with the two match answers replaced by
    // `api::wire`'s encodings of the same messages (each matched pattern as bytes encoded once
    // per generation); every other type is `pb`'s. Nothing else is generated twice: prost
    // skips types that have an extern path.
    let wire = out.join("wire");
    fs::create_dir_all(&wire)?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .out_dir(&wire)
        .extern_path(".hotplane.v1", "crate::pb")
        .extern_path(
            ".hotplane.v1.MatchPatternResponse",
            "crate::api::wire::MatchPatternResponse",
        )
        .extern_path(
            ".hotplane.v1.BatchMatchPatternsResponse",
            "crate::api::wire::BatchMatchPatternsResponse",
        )
        .compile_fds(fds)?;
    Ok(())
}
