//! OpenTelemetry: the gate's spans at a real OTLP/HTTP collector
//! (`testkit::otlp`, decoding the OpenTelemetry proto definitions).

use super::*;

/// A decision sent with a W3C `traceparent` is a span of that trace: the
/// request's server span continues it, the decision span is its child with
/// the decision's attributes, and the stages are the decision's children.
/// An unlogged evaluation and an admin change have spans too. No attribute
/// holds the request's target or context. `/metrics` counts what was sent.
#[test]
fn a_decision_is_a_span_of_the_callers_trace() {
    let otlp = testkit::otlp::Otlp::start();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(
        dir.path(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.url.as_str())],
    );
    let (trace, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let secret = "acct-personal-0042";
    let body = intent(
        "agent-treasury",
        "payments",
        "transfer",
        json!({"amount": 5, "to": secret}),
        "traced-1",
    );
    let (status, r) = response(
        ureq::post(&format!("{}/v1/decisions", s.url))
            .set("authorization", &format!("Bearer {}", s.demo()))
            .set("traceparent", &format!("00-{trace}-{parent}-01"))
            .send_string(&body.to_string()),
    );
    assert_eq!(
        (status, r["decision"].as_str()),
        (200, Some("PERMIT")),
        "{r}"
    );
    let (status, _) = response(
        ureq::post(&format!("{}/v1/evaluations", s.url))
            .set("authorization", &format!("Bearer {}", s.demo()))
            .send_string(&body.to_string()),
    );
    assert_eq!(status, 200);
    s.add_caller("traced", &["decide"], "agent-*");

    let named = |spans: &[testkit::otlp::Received], name: &str| {
        spans.iter().find(|x| x.span.name == name).cloned()
    };
    let spans = otlp.wait_for("the decision, evaluation and governance spans", |spans| {
        ["decision", "commit", "evaluation"]
            .iter()
            .all(|n| named(spans, n).is_some())
            && spans.iter().any(|x| {
                x.span.name == "governance"
                    && x.attr("tollgate.governance.by").as_deref() == Some("admin-token")
            })
    });
    let decision = named(&spans, "decision").unwrap();
    assert_eq!(decision.trace_id(), trace, "the caller's trace");
    let server = spans
        .iter()
        .find(|x| x.span_id() == decision.parent_span_id())
        .expect("the decision's parent span");
    assert_eq!(server.span.name, "POST /v1/decisions");
    assert_eq!(
        server.parent_span_id(),
        parent,
        "continues the caller's span"
    );
    assert_eq!(
        server.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    for (key, want) in [
        ("tollgate.decision", "PERMIT"),
        ("tollgate.caller", "demo"),
        ("tollgate.caller.via", "token"),
        ("tollgate.actor.id", "agent-treasury"),
        ("tollgate.surface", "payments"),
        ("tollgate.action", "transfer"),
        ("tollgate.policy.engine", "rego"),
    ] {
        assert_eq!(decision.attr(key).as_deref(), Some(want), "{key}");
    }
    assert_eq!(
        decision.attr("tollgate.receipt_id"),
        r["receipt_id"].as_str().map(str::to_string)
    );
    assert_eq!(
        decision.attr("tollgate.log_index"),
        Some(r["log_index"].to_string())
    );
    assert_eq!(
        decision.attr("tollgate.policy.version"),
        r["policy_version"].as_str().map(str::to_string)
    );
    assert_eq!(
        decision.resource_attr("service.name").as_deref(),
        Some("tollgate")
    );
    for stage in ["validate", "evaluate", "sign", "commit"] {
        let st = named(&spans, stage).unwrap_or_else(|| panic!("no {stage} span"));
        assert_eq!(
            st.parent_span_id(),
            decision.span_id(),
            "{stage} is the decision's"
        );
    }
    let evaluation = named(&spans, "evaluation").unwrap();
    assert_eq!(evaluation.attr("tollgate.logged").as_deref(), Some("false"));
    let added = spans
        .iter()
        .find(|x| x.attr("tollgate.governance.by").as_deref() == Some("admin-token"))
        .unwrap();
    assert_eq!(
        added.attr("tollgate.governance.action").as_deref(),
        Some("caller.add")
    );
    assert!(
        !format!("{spans:?}").contains(secret),
        "a request's target is never exported"
    );
    let metrics = s.get_text("/metrics");
    let exported = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tollgate_otel_spans_total{result=\"exported\"} "))
        .unwrap();
    assert!(exported.parse::<u64>().unwrap() >= 6, "{metrics}");
}

/// With tracing on, the log lines written while a request is served carry
/// its trace and span ids, so a log line and its trace are found together.
#[test]
fn log_lines_carry_the_trace_id() {
    let otlp = testkit::otlp::Otlp::start();
    let dir = tempfile::tempdir().unwrap();
    let err_path = dir.path().join("gate.err");
    let mut cmd = testkit::tollgate_serve(&dir.path().join("data"));
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.url)
        .stderr(std::fs::File::create(&err_path).unwrap());
    let gate = Proc::start(cmd, testkit::TOLLGATE_READY, 0);
    let trace = "0af7651916cd43dd8448eb211c80319c";
    // An admin call with a wrong token is refused, and says so in the log.
    let (status, _) = response(
        ureq::get(&format!("{}/v1/admin/callers", gate.url))
            .set("authorization", &format!("Bearer {}", "0".repeat(64)))
            .set("traceparent", &format!("00-{trace}-b7ad6b7169203331-01"))
            .call(),
    );
    assert_eq!(status, 401);
    eventually("the refusal logged with its trace id", || {
        std::fs::read_to_string(&err_path)
            .unwrap()
            .lines()
            .any(|l| l.contains("admin call refused") && l.contains(&format!("trace_id={trace}")))
    });
}
