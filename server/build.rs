//! Generates the gRPC service of the Open Inference Protocol from proto/inference.proto with
//! protox, a protobuf compiler in Rust: no `protoc` binary and no network at build time.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/inference.proto");
    let descriptors = protox::compile(["proto/inference.proto"], ["proto"])?;
    // For gRPC server reflection (grpcurl, grpcui, Postman): the service's own descriptors.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("inference_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    // The service's own codec: a message that does not decode is the caller's INVALID_ARGUMENT.
    tonic_prost_build::configure()
        .build_client(false)
        .codec_path("crate::transport::grpc::CallersCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
