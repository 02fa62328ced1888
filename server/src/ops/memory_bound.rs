//! The memory callers can make the server hold, as a formula of its flags (docs/operations.md,
//! "Memory is therefore bounded by"): `predictor serve` logs it at start, and
//! `server/tests/integration/memory_bound.rs` holds a server under every attack at once to it.
//! The models' own runs are apart: each bundle's largest request, as `predictor check` measures
//! it (its tensors, its outputs and ONNX Runtime's working memory).

const MIB: u64 = 1 << 20;

/// HTTP/2: the request data a connection may have sent that the server has not read yet (its
/// connection window; hyper's default, set here so that the bound names it).
pub const HTTP2_CONNECTION_WINDOW: u32 = 1 << 20;
/// HTTP/2: a stream's headers, decoded.
pub const HTTP2_HEADER_LIST: u32 = 16 << 10;
/// The largest piece of an answer given to the HTTP library at once; HTTP/2 buffers at most one
/// a stream beyond the peer's window.
pub const ANSWER_PIECE: usize = 16 << 10;

/// What one request in flight may hold for each byte of its body: the body itself, what it
/// decodes to beside its tensors (a gRPC message's structure: 2 bytes a byte), and its tensors
/// (a JSON number of 2 bytes, `0,`, becomes 8).
const HELD_PER_BODY_BYTE: u64 = 1 + 2 + 4;
/// And whatever its size: a gRPC message's structure takes 1 MiB more, a JSON body's at most a
/// few MiB (its lists are capped as they are read).
const HELD_PER_REQUEST: u64 = 4 * MIB;
/// An image being decoded: up to 8 bytes a pixel (16-bit RGBA) and its 3-byte RGB copy. One at
/// a time per request, and [`Flags::image_decoders`] requests at once.
const HELD_PER_IMAGE_PIXEL: u64 = 8 + 3;

/// The flags the bound is a formula of.
#[derive(Debug, Clone, Copy)]
pub struct Flags {
    /// `--max-upload-bytes`: bodies still arriving, all together.
    pub max_upload_bytes: u64,
    /// `--max-body-bytes`.
    pub max_body_bytes: u64,
    /// `--max-concurrent-requests`: requests from their body read until their answer is sent.
    pub max_concurrent_requests: u64,
    /// Connection places, regular and overflow together (`--max-connections` and the overflow).
    pub connections: u64,
    /// `--max-concurrent-streams`.
    pub max_concurrent_streams: u64,
    /// `--max-image-pixels`, where an image bundle is served.
    pub max_image_pixels: Option<u64>,
    /// Requests whose images are decoded at once (one a CPU).
    pub image_decoders: u64,
}

/// The bound's terms, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBound {
    /// Bodies still arriving.
    pub uploads: u64,
    /// Requests in flight: bodies, what they decode to, images being decoded.
    pub requests: u64,
    /// Connections' buffers.
    pub connections: u64,
    /// What the allocator may keep of all that, freed, for reuse: a quarter.
    pub spare: u64,
}

impl MemoryBound {
    pub fn of(flags: &Flags) -> MemoryBound {
        let images = flags.max_image_pixels.map_or(0, |pixels| {
            pixels
                .saturating_mul(HELD_PER_IMAGE_PIXEL)
                .saturating_mul(flags.image_decoders)
        });
        let per_request = flags
            .max_body_bytes
            .saturating_mul(HELD_PER_BODY_BYTE)
            .saturating_add(HELD_PER_REQUEST);
        let per_stream = u64::from(HTTP2_HEADER_LIST) + ANSWER_PIECE as u64;
        let per_connection = flags
            .max_concurrent_streams
            .saturating_mul(per_stream)
            .saturating_add(u64::from(HTTP2_CONNECTION_WINDOW));
        let uploads = flags.max_upload_bytes;
        let requests = flags
            .max_concurrent_requests
            .saturating_mul(per_request)
            .saturating_add(images);
        let connections = flags.connections.saturating_mul(per_connection);
        let held = uploads.saturating_add(requests).saturating_add(connections);
        MemoryBound {
            uploads,
            requests,
            connections,
            spare: held / 4,
        }
    }

    pub fn total(&self) -> u64 {
        self.uploads
            .saturating_add(self.requests)
            .saturating_add(self.connections)
            .saturating_add(self.spare)
    }
}

/// Bytes in MiB, rounded up, for logs and documents.
pub fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(MIB)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The figures docs/operations.md quotes.
    #[test]
    fn the_documented_figures() {
        // The soak test's flags: 1 MiB bodies, 32 MiB arriving, 16 in flight, 48 + 32
        // connections of 8 streams.
        let soak = MemoryBound::of(&Flags {
            max_upload_bytes: 32 * MIB,
            max_body_bytes: MIB,
            max_concurrent_requests: 16,
            connections: 48 + 32,
            max_concurrent_streams: 8,
            max_image_pixels: None,
            image_decoders: 2,
        });
        assert_eq!(
            (
                mib(soak.uploads),
                mib(soak.requests),
                mib(soak.connections),
                mib(soak.total())
            ),
            (32, 176, 100, 385)
        );
        // The defaults under 1,024 open files (896 + 64 connections), with an image bundle, on
        // 2 CPUs.
        let defaults = MemoryBound::of(&Flags {
            max_upload_bytes: 256 * MIB,
            max_body_bytes: 8 * MIB,
            max_concurrent_requests: 64,
            connections: 896 + 64,
            max_concurrent_streams: 100,
            max_image_pixels: Some(1 << 24),
            image_decoders: 2,
        });
        assert_eq!(
            (
                mib(defaults.uploads),
                mib(defaults.requests),
                mib(defaults.connections),
                mib(defaults.total())
            ),
            (256, 4_192, 3_960, 10_510)
        );
    }
}
