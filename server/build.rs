//! Generates the gRPC services (the Open Inference Protocol's, proto/inference.proto, and the
//! standard health service, proto/health.proto) with
//! protox, a protobuf compiler in Rust: no `protoc` binary and no network at build time. And
//! compresses the API page's assets with gzip, so that serving them costs no compression.

/// The messages read from REST's JSON answers (see below).
const FROM_REST_JSON: [&str; 14] = [
    "ServerMetadataResponse",
    "ModelMetadataResponse",
    "ModelMetadataResponse.TensorMetadata",
    "RepositoryIndexResponse.ModelIndex",
    "ModelConfig",
    "ModelInput",
    "ModelOutput",
    "ModelTensorReshape",
    "ModelInstanceGroup",
    "ModelDynamicBatching",
    "ModelStatistics",
    "InferStatistics",
    "InferBatchStatistics",
    "StatisticDuration",
];

/// The assets `/docs` serves, which the binary holds as they are and gzip-compressed.
const ASSETS: [&str; 2] = [
    "assets/swagger-ui/swagger-ui-bundle.js",
    "assets/swagger-ui/swagger-ui.css",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    for asset in ASSETS {
        println!("cargo:rerun-if-changed={asset}");
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gzip, &std::fs::read(asset)?)?;
        let name = std::path::Path::new(asset)
            .file_name()
            .ok_or("an asset's name")?;
        std::fs::write(
            out.join(format!("{}.gz", name.to_string_lossy())),
            gzip.finish()?,
        )?;
    }

    let files = ["proto/inference.proto", "proto/health.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    // For gRPC server reflection (grpcurl, grpcui, Postman): the services' own descriptors.
    std::fs::write(
        out.join("inference_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    // The services' own codec: a message that does not decode is the caller's INVALID_ARGUMENT.
    let mut build = tonic_prost_build::configure()
        .build_client(false)
        .codec_path("crate::transport::grpc::CallersCodec");
    // The descriptions and reports REST answers in JSON are read from that JSON into these
    // messages: one mapping of each, so that the two transports cannot say different things.
    for message in FROM_REST_JSON {
        // A field the JSON has and the message lacks (a renamed one) is an error, not dropped;
        // except in ModelConfig, whose flattened oneof serde cannot combine with that.
        let strict = if message == "ModelConfig" {
            ""
        } else {
            " #[serde(deny_unknown_fields)]"
        };
        build = build.message_attribute(
            format!("inference.{message}"),
            format!("#[derive(serde::Deserialize)] #[serde(default)]{strict}"),
        );
    }
    for field in ["ModelInput.data_type", "ModelOutput.data_type"] {
        let attribute =
            r#"#[serde(deserialize_with = "crate::transport::grpc::inference::data_type")]"#;
        build = build.field_attribute(format!("inference.{field}"), attribute);
    }
    build
        .field_attribute(
            "inference.ModelInstanceGroup.kind",
            r#"#[serde(deserialize_with = "crate::transport::grpc::inference::instance_kind")]"#,
        )
        .field_attribute(
            "inference.ModelConfig.scheduling_choice",
            "#[serde(flatten)]",
        )
        .enum_attribute(
            "inference.ModelConfig.scheduling_choice",
            r#"#[derive(serde::Deserialize)] #[serde(rename_all = "snake_case")]"#,
        )
        .compile_fds(descriptors)?;
    Ok(())
}
