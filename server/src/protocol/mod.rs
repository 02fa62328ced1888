//! What the server's two protocols mean, apart from their transports: the seed REST API
//! ([`seed`]) and the Open Inference Protocol v2 ([`v2`]), shared by REST and gRPC; and OpenAI's
//! embeddings API ([`openai`]) for text bundles.

pub mod openai;
pub mod seed;
pub mod v2;
