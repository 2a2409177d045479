"""An OpenTelemetry collector for the tests: an HTTP server on 127.0.0.1
port 0 that takes OTLP/HTTP protobuf exports (`POST /v1/traces`) and decodes
them with the OpenTelemetry proto definitions (`opentelemetry-proto`); a body
that does not decode fails the test."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)


class Collector:
    """The spans received, as dicts: name, trace_id, span_id, parent_span_id
    (lowercase hex) and attributes (as text)."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.errors: list[str] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                try:
                    assert self.path == "/v1/traces", self.path
                    request = ExportTraceServiceRequest.FromString(body)
                    collector.take(request)
                except Exception as e:  # reported by wait_for
                    collector.errors.append(repr(e))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self, request: Any) -> None:
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    attrs = {}
                    for kv in span.attributes:
                        kind = kv.value.WhichOneof("value")
                        value = str(getattr(kv.value, kind))
                        attrs[kv.key] = value.lower() if kind == "bool_value" else value
                    self.spans.append({
                        "name": span.name,
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "attributes": attrs,
                    })  # fmt: skip

    def wait_for(self, what: str, found: Any, seconds: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + seconds
        while not found(self.spans):
            assert not self.errors, self.errors
            assert time.monotonic() < deadline, f"the collector never got {what}: {self.spans}"
            time.sleep(0.05)
        return list(self.spans)

    def close(self) -> None:
        self.server.shutdown()
