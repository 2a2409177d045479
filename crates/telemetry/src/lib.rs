//! OpenTelemetry traces over OTLP/HTTP with protobuf (`POST
//! <endpoint>/v1/traces`, `Content-Type: application/x-protobuf`, as the
//! OTLP specification defines it), for the gate and its gateways.
//!
//! - [`Exporter::start`]: a tracer provider whose finished, sampled spans go
//!   through a bounded queue ([`QUEUE`] spans) to one thread that posts them
//!   in batches (up to [`BATCH`], at least every [`INTERVAL`]). A full queue
//!   drops the span and counts it ([`counts`]): exporting never delays a
//!   decision. Encoded with the OpenTelemetry proto definitions
//!   (`opentelemetry-proto`), sent with the HTTP client the project already
//!   has.
//! - Sampling and the resource come from the standard variables, read by the
//!   SDK: `OTEL_TRACES_SAMPLER` (default `parentbased_always_on`),
//!   `OTEL_TRACES_SAMPLER_ARG`, `OTEL_SERVICE_NAME`,
//!   `OTEL_RESOURCE_ATTRIBUTES`; [`endpoint`] resolves where to send.
//! - [`parent`]: the W3C trace context (`traceparent`, `tracestate`) of an
//!   incoming request, so a span continues the caller's trace.
//! - Spans are `tracing` spans with target [`TARGET`]: with no endpoint the
//!   process installs no OpenTelemetry layer and those callsites are
//!   disabled, so tracing off costs a branch per span.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, Span, SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;
use prost::Message;

/// The `tracing` target of every span meant for OpenTelemetry.
pub const TARGET: &str = "otel";

/// Finished spans waiting to be sent, at most.
pub const QUEUE: usize = 2048;

/// Spans in one export request, at most.
pub const BATCH: usize = 512;

/// How long a finished span waits to be sent, at most.
pub const INTERVAL: Duration = Duration::from_millis(500);

/// How long one export request may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

static EXPORTED: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);

/// Spans this process exported, dropped (the queue was full) and failed to
/// export (the collector refused them or could not be reached).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Sent to the collector.
    pub exported: u64,
    /// Dropped: the queue was full.
    pub dropped: u64,
    /// Not accepted: the collector refused them or could not be reached.
    pub failed: u64,
}

/// The counts so far.
#[must_use]
pub fn counts() -> Counts {
    Counts {
        exported: EXPORTED.load(Relaxed),
        dropped: DROPPED.load(Relaxed),
        failed: FAILED.load(Relaxed),
    }
}

/// Where traces go: `configured` (a base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is) with `/v1/traces` appended; else `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
/// as it is; else `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces`. `None`
/// (tracing off) when none is set, or `OTEL_SDK_DISABLED=true`.
#[must_use]
pub fn endpoint(configured: Option<&str>) -> Option<String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return None;
    }
    let base = |b: &str| format!("{}/v1/traces", b.trim().trim_end_matches('/'));
    configured
        .filter(|c| !c.trim().is_empty())
        .map(base)
        .or_else(|| var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").map(|v| v.trim().to_string()))
        .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT").map(|v| base(&v)))
}

/// `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else `OTEL_EXPORTER_OTLP_HEADERS`:
/// `key=value` pairs separated by commas (values percent-decoded).
fn headers() -> Vec<(String, String)> {
    let raw = std::env::var("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_HEADERS"))
        .unwrap_or_default();
    raw.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.trim().to_string(), percent_decode(v.trim())))
        })
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The W3C trace context a request carries (`traceparent`, `tracestate`),
/// read through `get` (header lookup by lowercase name); the empty context
/// if there is none or it is malformed.
#[must_use]
pub fn parent(get: &dyn Fn(&str) -> Option<String>) -> opentelemetry::Context {
    struct Headers(Vec<(&'static str, String)>);
    impl Extractor for Headers {
        fn get(&self, key: &str) -> Option<&str> {
            self.0
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_str())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.iter().map(|(k, _)| *k).collect()
        }
    }
    let found = ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|k| get(k).map(|v| (k, v)))
        .collect();
    TraceContextPropagator::new().extract(&Headers(found))
}

/// Makes `span` continue the trace a request carries (see [`parent`]);
/// nothing if the span is disabled (tracing off) or the request carries
/// none.
pub fn continue_trace(span: &tracing::Span, get: &dyn Fn(&str) -> Option<String>) {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if span.is_disabled() {
        return;
    }
    let cx = parent(get);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// An OpenTelemetry context (what [`context_of`] returns), to attach on
/// another thread.
pub use opentelemetry::Context as TraceContext;

/// The OpenTelemetry context of `span` (to attach on another thread, so
/// that an SDK call made there carries it); the empty context when tracing
/// is off.
#[must_use]
pub fn context_of(span: &tracing::Span) -> opentelemetry::Context {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if span.is_disabled() {
        return opentelemetry::Context::new();
    }
    span.context()
}

/// The trace and span ids of `span` (lowercase hex), for logs; `None` when
/// tracing is off.
#[must_use]
pub fn ids(span: &tracing::Span) -> Option<(String, String)> {
    use opentelemetry::trace::TraceContextExt;
    let cx = context_of(span);
    let s = cx.span();
    let sc = s.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// The span of one MCP `tools/call` at the gateway (OpenTelemetry's GenAI
/// and MCP conventions: `execute_tool {name}`, `gen_ai.tool.name`,
/// `mcp.method.name`, `mcp.session.id`), continuing the trace the client
/// sent in `params._meta`; the decision is its child.
#[must_use]
pub fn tool_call_span(
    tool: &str,
    session: Option<&str>,
    trace: &[(String, String)],
) -> tracing::Span {
    let span = tracing::info_span!(
        target: TARGET,
        "execute_tool",
        otel.name = tracing::field::Empty,
        otel.kind = "server",
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = tool,
        mcp.method.name = "tools/call",
        mcp.session.id = session,
        tollgate.decision = tracing::field::Empty,
    );
    if !span.is_disabled() {
        span.record("otel.name", format!("execute_tool {tool}").as_str());
        continue_trace(&span, &|k| {
            trace
                .iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone())
        });
    }
    span
}

/// A message to the exporting thread.
enum Msg {
    Span(Box<SpanData>),
    Flush(SyncSender<()>),
}

/// The span processor: sampled spans into the bounded queue.
#[derive(Debug)]
struct Queue {
    tx: Mutex<Option<SyncSender<Msg>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Queue {
    fn sender(&self) -> Option<SyncSender<Msg>> {
        self.tx.lock().expect("queue lock").clone()
    }
}

impl SpanProcessor for Queue {
    fn on_start(&self, _span: &mut Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        let Some(tx) = self.sender() else { return };
        match tx.try_send(Msg::Span(Box::new(span))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                DROPPED.fetch_add(1, Relaxed);
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let Some(tx) = self.sender() else {
            return Ok(());
        };
        let (done, wait) = sync_channel(1);
        tx.send(Msg::Flush(done))
            .map_err(|_| OTelSdkError::InternalFailure("the exporter stopped".into()))?;
        wait.recv_timeout(EXPORT_TIMEOUT + INTERVAL)
            .map_err(|_| OTelSdkError::Timeout(EXPORT_TIMEOUT))
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        // The thread sends what is queued once the sender is gone.
        drop(self.tx.lock().expect("queue lock").take());
        if let Some(t) = self.thread.lock().expect("queue lock").take() {
            t.join()
                .map_err(|_| OTelSdkError::InternalFailure("the exporter panicked".into()))?;
        }
        Ok(())
    }
}

/// Posts `batch` to `url`; counts what was sent or failed.
fn export(
    url: &str,
    headers: &[(String, String)],
    resource: &ResourceAttributesWithSchema,
    batch: &mut Vec<SpanData>,
) {
    if batch.is_empty() {
        return;
    }
    let n = batch.len() as u64;
    let request = ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(std::mem::take(batch), resource),
    };
    let mut post = ureq::post(url)
        .timeout(EXPORT_TIMEOUT)
        .set("content-type", "application/x-protobuf");
    for (k, v) in headers {
        post = post.set(k, v);
    }
    match post.send_bytes(&request.encode_to_vec()) {
        Ok(_) => {
            EXPORTED.fetch_add(n, Relaxed);
        }
        Err(e) => {
            let first = FAILED.fetch_add(n, Relaxed) == 0;
            if first {
                // Said once; the count in /metrics says the rest.
                eprintln!("tollgate: exporting traces to {url}: {e}");
            }
        }
    }
}

/// The exporting thread: batches from the queue to the collector.
fn run(rx: &Receiver<Msg>, url: &str, resource: &ResourceAttributesWithSchema) {
    let headers = headers();
    let mut batch = Vec::with_capacity(BATCH);
    let mut due = Instant::now() + INTERVAL;
    loop {
        match rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
            Ok(Msg::Span(s)) => {
                batch.push(*s);
                if batch.len() >= BATCH {
                    export(url, &headers, resource, &mut batch);
                    due = Instant::now() + INTERVAL;
                }
            }
            Ok(Msg::Flush(done)) => {
                export(url, &headers, resource, &mut batch);
                let _ = done.send(());
            }
            Err(RecvTimeoutError::Timeout) => {
                export(url, &headers, resource, &mut batch);
                due = Instant::now() + INTERVAL;
            }
            Err(RecvTimeoutError::Disconnected) => {
                export(url, &headers, resource, &mut batch);
                return;
            }
        }
    }
}

/// A running exporter: its tracer provider (flushed and shut down on
/// drop).
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Starts exporting to `url` (see [`endpoint`]) for `service` (unless
    /// `OTEL_SERVICE_NAME` names another).
    ///
    /// # Errors
    ///
    /// The exporting thread could not be started.
    pub fn start(url: &str, service: &'static str) -> std::io::Result<Exporter> {
        let mut resource = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(service);
        }
        let resource = resource.build();
        let attributes = ResourceAttributesWithSchema::from(&resource);
        let (tx, rx) = sync_channel(QUEUE);
        let url = url.to_string();
        let thread = std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || run(&rx, &url, &attributes))?;
        let queue = Queue {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        };
        let provider = SdkTracerProvider::builder()
            .with_span_processor(queue)
            .with_resource(resource)
            .build();
        Ok(Exporter { provider })
    }

    /// The `tracing` layer that turns spans of target [`TARGET`] into
    /// OpenTelemetry spans (filter it to that target).
    #[must_use]
    pub fn layer<S>(
        &self,
    ) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("tollgate"))
            .with_threads(false)
            .with_location(false)
    }

    /// Sends every finished span now.
    ///
    /// # Errors
    ///
    /// The exporter stopped or timed out.
    pub fn flush(&self) -> OTelSdkResult {
        self.provider.force_flush()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt;

    use super::{parent, percent_decode};

    #[test]
    fn a_traceparent_is_the_parent_and_a_bad_one_is_none() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let cx = parent(&|k: &str| (k == "traceparent").then(|| tp.to_string()));
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        assert_eq!(
            sc.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(sc.span_id().to_string(), "b7ad6b7169203331");
        let bad = parent(&|k: &str| (k == "traceparent").then(|| "00-zz-01".to_string()));
        assert!(!bad.span().span_context().is_valid());
        assert!(!parent(&|_| None).span().span_context().is_valid());
    }

    #[test]
    fn header_values_are_percent_decoded() {
        assert_eq!(percent_decode("Basic%20abc%3D"), "Basic abc=");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
