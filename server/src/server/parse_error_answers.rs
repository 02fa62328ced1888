//! The answers hyper writes by itself, before a request exists, to bytes it cannot parse as an
//! HTTP/1 request head (400 for a malformed request line or header, 414 for a request target
//! over 65 534 bytes, 431 for a head over its buffer or with more than 100 headers), get the JSON
//! body every other error answer of the server has. Hyper offers no hook for them: they leave
//! with `content-length: 0`, and the connection closes after. So the connection's writer
//! recognises such an answer as it is written, as one whole head with an empty body (the
//! handlers' own error answers always carry a body, so none is mistaken for one), and writes it
//! with a body instead.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longer than any head hyper writes for a parse error (a status line, content-length, date).
const MAX_HEAD_BYTES: usize = 512;

/// The error message of each status hyper answers by itself.
fn message_of(status: &[u8]) -> Option<&'static str> {
    Some(match status {
        b"400" => "the request is not an HTTP/1 request the server can read: its request line or a header is malformed",
        b"414" => "the request target (path and query) is longer than the 65534 bytes the server reads",
        b"431" => "the request head is larger than the server reads (about 400 KiB), or has more than 100 headers",
        _ => return None,
    })
}

/// `head` with a JSON error body, when it is one of hyper's own bodiless error answers: exactly
/// one HTTP/1 answer head, a status of [`message_of`], `content-length: 0`, no content type.
fn with_json_body(head: &[u8]) -> Option<Vec<u8>> {
    // Every write of every connection comes here: the bytes of the status line decide, before
    // anything looks at the rest (hyper's own answer heads are about a hundred bytes).
    if head.len() > MAX_HEAD_BYTES
        || !(head.starts_with(b"HTTP/1.1 ") || head.starts_with(b"HTTP/1.0 "))
    {
        return None;
    }
    let message = message_of(head.get(9..12)?)?;
    let text = std::str::from_utf8(head).ok()?;
    let fields = text.strip_suffix("\r\n\r\n")?;
    if fields.contains("\r\n\r\n") {
        return None; // more than one head: not what hyper writes for a parse error
    }
    let mut lines = fields.split("\r\n");
    let status_line = lines.next()?;
    let mut kept = Vec::new();
    let mut empty = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        if name.eq_ignore_ascii_case("content-type") {
            return None;
        }
        if name.eq_ignore_ascii_case("content-length") {
            empty = value.trim() == "0";
            continue;
        }
        kept.push(line);
    }
    if !empty {
        return None;
    }
    let body = serde_json::json!({ "error": message }).to_string();
    let mut answer = String::with_capacity(head.len() + body.len() + 64);
    answer.push_str(status_line);
    answer.push_str("\r\n");
    for line in kept {
        answer.push_str(line);
        answer.push_str("\r\n");
    }
    answer.push_str("content-type: application/json\r\n");
    answer.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    answer.push_str(&body);
    Some(answer.into_bytes())
}

/// A connection whose writer completes hyper's own error answers with a JSON body.
pub struct WithJsonParseErrors<T> {
    inner: T,
    /// A completed answer accepted from hyper and not yet all written, and how much of it is.
    pending: Vec<u8>,
    written: usize,
}

impl<T> WithJsonParseErrors<T> {
    pub fn new(inner: T) -> Self {
        WithJsonParseErrors {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

impl<T: AsyncWrite + Unpin> WithJsonParseErrors<T> {
    /// Writes what is pending of a completed answer.
    fn poll_pending(&mut self, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let written = ready!(
                Pin::new(&mut self.inner).poll_write(context, &self.pending[self.written..])
            )?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += written;
        }
        self.pending = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Accepts `data` whole as the completed `answer`: it is written now or by the next flush.
    fn accept_completed(
        &mut self,
        context: &mut Context<'_>,
        data_len: usize,
        answer: Vec<u8>,
    ) -> Poll<io::Result<usize>> {
        self.pending = answer;
        self.written = 0;
        match self.poll_pending(context) {
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            _ => Poll::Ready(Ok(data_len)),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WithJsonParseErrors<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(context, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WithJsonParseErrors<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(context))?;
        match with_json_body(data) {
            Some(answer) => self.accept_completed(context, data.len(), answer),
            None => Pin::new(&mut self.inner).poll_write(context, data),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(context))?;
        let mut filled = data.iter().filter(|slice| !slice.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next()) {
            if let Some(answer) = with_json_body(only) {
                return self.accept_completed(context, only.len(), answer);
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(context, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(context))?;
        Pin::new(&mut self.inner).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(context))?;
        Pin::new(&mut self.inner).poll_shutdown(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const HYPER_431: &[u8] =
        b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 05:00:00 GMT\r\n\r\n";

    #[test]
    fn hyper_s_own_error_answers_get_a_json_body() {
        let answer = String::from_utf8(with_json_body(HYPER_431).unwrap()).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("\r\ndate: Wed, 02 Dec 2026 05:00:00 GMT"));
        assert!(head.contains("\r\ncontent-type: application/json"));
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        assert!(!head.contains("content-length: 0"));
        let error: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(error["error"].as_str().unwrap().contains("100 headers"));
    }

    #[test]
    fn other_answers_are_written_as_they_are() {
        for head in [
            // a handler's error: it has a body
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n"[..],
            // an answer that is not an error hyper writes itself
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            // a head with its body in the same write
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}",
            // two answers (pipelined) in one write
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nHTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n",
            // HTTP/2 frames
            b"\x00\x00\x12\x04\x00\x00\x00\x00\x00",
            // a head cut short
            b"HTTP/1.1 40",
        ] {
            assert!(
                with_json_body(head).is_none(),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    /// Through the writer, over a pipe whose other end reads slowly: the whole completed answer
    /// arrives, and hyper is told its head was written.
    #[tokio::test]
    async fn the_writer_writes_the_completed_answer_whole() {
        let (near, mut far) = tokio::io::duplex(16);
        let mut writer = WithJsonParseErrors::new(near);
        let reader = tokio::spawn(async move {
            let mut received = Vec::new();
            far.read_to_end(&mut received).await.unwrap();
            received
        });
        let written = writer.write(HYPER_431).await.unwrap();
        assert_eq!(written, HYPER_431.len());
        writer.flush().await.unwrap();
        writer.shutdown().await.unwrap();
        drop(writer);
        let received = reader.await.unwrap();
        assert_eq!(received, with_json_body(HYPER_431).unwrap());
    }
}
