//! An OpenTelemetry collector for tests: an HTTP server on 127.0.0.1 port 0
//! that takes OTLP/HTTP protobuf exports (`POST /v1/traces`), decodes them
//! with the OpenTelemetry proto definitions (a body that does not decode
//! fails the test: nothing is accepted blindly) and keeps every span.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// A span as received, with its resource's attributes.
#[derive(Clone, Debug)]
pub struct Received {
    /// The attributes of the resource that sent it.
    pub resource: Vec<KeyValue>,
    /// The span.
    pub span: Span,
}

impl Received {
    /// A string, integer or boolean attribute of the span, as text.
    #[must_use]
    pub fn attr(&self, key: &str) -> Option<String> {
        find(&self.span.attributes, key)
    }

    /// An attribute of the resource, as text.
    #[must_use]
    pub fn resource_attr(&self, key: &str) -> Option<String> {
        find(&self.resource, key)
    }

    /// Lowercase hex, as W3C trace context writes ids.
    #[must_use]
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    /// Its span id, lowercase hex.
    #[must_use]
    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    /// Its parent's span id, lowercase hex (empty for a root).
    #[must_use]
    pub fn parent_span_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn find(attrs: &[KeyValue], key: &str) -> Option<String> {
    let v = attrs
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match v {
        Value::StringValue(s) => s.clone(),
        Value::IntValue(i) => i.to_string(),
        Value::BoolValue(b) => b.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}

/// The collector; stops with the test process.
pub struct Otlp {
    /// Its base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub url: String,
    spans: Arc<Mutex<Vec<Received>>>,
}

impl Otlp {
    /// Listens on 127.0.0.1, port 0.
    ///
    /// # Panics
    ///
    /// If it cannot listen.
    #[must_use]
    pub fn start() -> Otlp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let kept = kept.clone();
                std::thread::spawn(move || serve(conn, &kept));
            }
        });
        Otlp { url, spans }
    }

    /// Every span received so far.
    #[must_use]
    pub fn spans(&self) -> Vec<Received> {
        self.spans.lock().expect("spans lock").clone()
    }

    /// Waits (up to 20 s) until `found` holds for the spans received.
    ///
    /// # Panics
    ///
    /// If it never does.
    pub fn wait_for(&self, what: &str, found: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans = self.spans();
            if found(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "the collector never got {what}: {spans:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One connection: requests until it closes.
fn serve(conn: TcpStream, kept: &Mutex<Vec<Received>>) {
    let mut out = conn.try_clone().expect("clone");
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let (mut length, mut path) = (
            0usize,
            line.split_whitespace().nth(1).unwrap_or("").to_string(),
        );
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().expect("a length");
                }
            }
        }
        let mut body = vec![0; length];
        r.read_exact(&mut body).expect("the body");
        assert_eq!(
            std::mem::take(&mut path),
            "/v1/traces",
            "OTLP traces go to /v1/traces"
        );
        let request = ExportTraceServiceRequest::decode(body.as_slice())
            .expect("an OTLP ExportTraceServiceRequest");
        let mut spans = kept.lock().expect("spans lock");
        for rs in request.resource_spans {
            let resource = rs.resource.map(|r| r.attributes).unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push(Received {
                        resource: resource.clone(),
                        span,
                    });
                }
            }
        }
        drop(spans);
        // An empty ExportTraceServiceResponse.
        let _ = out.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
        );
    }
}
