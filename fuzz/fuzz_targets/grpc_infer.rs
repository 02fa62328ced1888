#![no_main]
//! See `predictor::fuzzing::grpc_infer`.

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    predictor::fuzzing::grpc_infer(input);
});
