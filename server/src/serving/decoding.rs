//! Where a request's body is decoded: on the async reactor when it is small (most predictions,
//! decoded in microseconds), on tokio's blocking threads when it is large, so that decoding a
//! big JSON request does not stall the small requests that share its reactor thread.

use tracing::Span;

/// Bodies of at least this many bytes are decoded off the reactor: about half a millisecond of
/// JSON decoding, against the few microseconds of the hand-off to a blocking thread and back.
pub const OFF_REACTOR_BYTES: usize = 128 * 1024;

/// Runs `decode` of a body of `body_bytes`: at once when it is small, else on a blocking thread,
/// in the request's span either way.
pub async fn decode_sized<T: Send + 'static>(
    body_bytes: usize,
    decode: impl FnOnce() -> T + Send + 'static,
) -> T {
    if body_bytes < OFF_REACTOR_BYTES {
        return decode();
    }
    let span = Span::current();
    match tokio::task::spawn_blocking(move || span.in_scope(decode)).await {
        Ok(decoded) => decoded,
        // The decoders do not panic (they are fuzzed); should one, it unwinds here as it would
        // have on the reactor.
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[tokio::test(flavor = "current_thread")]
    async fn large_bodies_are_decoded_on_another_thread_small_ones_in_place() {
        let reactor = thread::current().id();
        let small = decode_sized(OFF_REACTOR_BYTES - 1, || thread::current().id()).await;
        assert_eq!(small, reactor);
        let large = decode_sized(OFF_REACTOR_BYTES, || thread::current().id()).await;
        assert_ne!(large, reactor);
    }
}
