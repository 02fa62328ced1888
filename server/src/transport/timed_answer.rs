//! An answer's body that ends its request's duration ([`AnswerTimer`]) once its last frame has
//! been taken to be written, or once it is dropped unwritten (the caller went away). The HTTP
//! layer wraps its answers directly; a gRPC call's timer comes from the service, which knows the
//! call's model, through [`TIMER`], a slot the gRPC gate lends the call.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::metrics::AnswerTimer;

/// `body`, ending `timer` when it ends.
pub fn timed(body: Body, timer: AnswerTimer) -> Body {
    Body::new(TimedBody {
        inner: body,
        timer: Some(timer),
    })
}

struct TimedBody {
    inner: Body,
    timer: Option<AnswerTimer>,
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(context);
        let ended = match &polled {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => self.inner.is_end_stream(),
            Poll::Pending => false,
        };
        if ended {
            self.timer.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Where a gRPC call's service leaves its timer for the gate to put on the answer's body.
#[derive(Clone, Default)]
pub struct TimerSlot(Arc<Mutex<Option<AnswerTimer>>>);

impl TimerSlot {
    pub fn put(&self, timer: AnswerTimer) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(timer);
    }

    pub fn take(&self) -> Option<AnswerTimer> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

tokio::task_local! {
    /// The slot of the gRPC call being served, for the duration of its service's future.
    pub static TIMER: TimerSlot;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Metrics, RouteLabels};
    use http_body_util::BodyExt;

    fn count(metrics: &Metrics) -> usize {
        metrics
            .render()
            .lines()
            .find(|line| line.starts_with("predictor_request_duration_seconds_count"))
            .map_or(0, |line| line.rsplit(' ').next().unwrap().parse().unwrap())
    }

    fn record(metrics: &Metrics) -> AnswerTimer {
        let route = RouteLabels {
            model: "m".into(),
            protocol: "http",
            endpoint: "/x".into(),
        };
        metrics
            .request_started(route, tracing::Span::none(), "499")
            .answered("200")
    }

    #[tokio::test]
    async fn the_duration_ends_with_the_answers_last_frame() {
        let metrics = Metrics::new();
        let (sender, stream) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, axum::Error>>(2);
        let streamed = Body::new(http_body_util::StreamBody::new(
            tokio_stream::wrappers::ReceiverStream::new(stream),
        ));
        let mut body = timed(streamed, record(&metrics));
        sender
            .send(Ok(Frame::data(Bytes::from("a"))))
            .await
            .unwrap();
        body.frame().await.unwrap().unwrap();
        assert_eq!(count(&metrics), 0, "observed before the answer ended");
        drop(sender);
        assert!(body.frame().await.is_none());
        assert_eq!(count(&metrics), 1);
        drop(body);
        assert_eq!(count(&metrics), 1, "observed once");
    }

    #[tokio::test]
    async fn a_whole_answer_ends_the_duration_with_its_one_frame() {
        let metrics = Metrics::new();
        let mut body = timed(Body::from("answer"), record(&metrics));
        body.frame().await.unwrap().unwrap();
        assert_eq!(count(&metrics), 1);
    }

    #[tokio::test]
    async fn an_answer_dropped_unwritten_ends_the_duration_too() {
        let metrics = Metrics::new();
        let body = timed(Body::from("answer"), record(&metrics));
        assert_eq!(count(&metrics), 0);
        drop(body);
        assert_eq!(count(&metrics), 1);
    }
}
