use serde_json::{json, Value};

use super::*;

fn line(v: &Value) -> String {
    v.to_string()
}

fn to_server(actions: &[Action]) -> Vec<Value> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ToServer(l) => Some(serde_json::from_str(l).unwrap()),
            _ => None,
        })
        .collect()
}

fn to_client(actions: &[Action]) -> Vec<Value> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ToClient(l) => Some(serde_json::from_str(l).unwrap()),
            _ => None,
        })
        .collect()
}

fn decide(actions: Vec<Action>) -> Call {
    let mut calls: Vec<Call> = actions
        .into_iter()
        .filter_map(|a| match a {
            Action::Decide(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(calls.len(), 1, "one call to decide");
    calls.pop().unwrap()
}

fn tools_page(id: &Value, tools: Value, next: Option<&str>) -> String {
    let mut result = json!({"tools": tools});
    if let Some(n) = next {
        result["nextCursor"] = json!(n);
    }
    line(&json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

fn echo_tool() -> Value {
    json!([{
        "name": "echo",
        "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]},
        "annotations": {"readOnlyHint": true}
    }, {
        "name": "Delete File!",
        "inputSchema": {"type": "object"},
        "annotations": {"destructiveHint": true}
    }])
}

fn call(id: Value, tool: &str, args: Value) -> String {
    line(
        &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}}),
    )
}

/// Through the handshake; a first call made the gateway list the tools,
/// and was decided (returned).
fn ready_with(first: String) -> (Gateway, Vec<Action>) {
    let mut g = Gateway::new("everything", "agent-1", "s1");
    let init = line(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"clientInfo": {"name": "pytest", "version": "1"}, "capabilities": {}}}));
    assert_eq!(g.from_client(&init), vec![Action::ToServer(init.clone())]);
    let inited = line(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    assert_eq!(
        g.from_client(&inited),
        vec![Action::ToServer(inited.clone())]
    );
    let out = g.from_client(&first);
    let sent = to_server(&out);
    assert_eq!(sent[0]["method"], "tools/list");
    let out = g.from_server(&tools_page(&sent[0]["id"], echo_tool(), None));
    (g, out)
}

fn ready() -> Gateway {
    let (mut g, out) = ready_with(call(json!("warm-up"), "echo", json!({"message": "w"})));
    let c = decide(out);
    assert!(g.decided(c, Outcome::Failed("warm-up".into())).len() == 1);
    g
}

#[test]
fn a_permitted_call_reaches_the_server_and_its_result_carries_the_decision() {
    let mut g = ready();
    let c = decide(g.from_client(&call(json!(7), "echo", json!({"message": "hi"}))));
    assert_eq!(c.intent["surface"], "everything");
    assert_eq!(c.intent["action"], "echo");
    assert_eq!(c.intent["actor"]["id"], "agent-1");
    assert_eq!(c.intent["target"], json!({"message": "hi"}));
    assert_eq!(c.intent["context"]["read_only"], true);
    assert_eq!(c.intent["context"]["client"], "pytest 1");
    protocol::DecisionRequest::parse(c.intent.to_string().as_bytes()).expect("a valid request");
    let decision = json!({"decision": "PERMIT", "receipt_id": "r1"});
    let out = g.decided(c, Outcome::Permit(decision.clone()));
    assert_eq!(to_server(&out)[0]["params"]["name"], "echo");
    let result =
        json!({"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": "hi"}]}});
    let out = to_client(&g.from_server(&line(&result)));
    assert_eq!(out[0]["result"]["_meta"][META_KEY], decision);
    assert_eq!(out[0]["result"]["content"][0]["text"], "hi");
}

#[test]
fn refused_and_failed_decisions_never_reach_the_server() {
    let mut g = ready();
    let c = decide(g.from_client(&call(json!("a"), "echo", json!({"message": "x"}))));
    let response = json!({"decision": "DENY", "receipt_id": "r2"});
    let out = g.decided(
        c,
        Outcome::Refused {
            decision: "DENY".into(),
            reason: "no".into(),
            response: response.clone(),
        },
    );
    assert!(to_server(&out).is_empty());
    let r = &to_client(&out)[0];
    assert_eq!(r["id"], "a");
    assert_eq!(r["result"]["isError"], true);
    assert_eq!(r["result"]["_meta"][META_KEY], response);
    let text = r["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("DENY") && text.contains("no") && text.contains("r2"),
        "{text}"
    );
    let c = decide(g.from_client(&call(json!("b"), "echo", json!({"message": "x"}))));
    let out = g.decided(c, Outcome::Failed("gate unreachable".into()));
    assert!(to_server(&out).is_empty());
    let text = to_client(&out)[0]["result"]["content"][0]["text"].clone();
    assert!(text.as_str().unwrap().contains("SILENCE"), "{text}");
}

#[test]
fn invalid_arguments_and_unknown_tools_reach_neither_gate_nor_server() {
    let mut g = ready();
    for (id, tool, args, why) in [
        (1, "echo", json!({}), "invalid arguments"),
        (2, "echo", json!({"message": 5}), "/message"),
        (3, "nope", json!({}), "no tool"),
    ] {
        let out = g.from_client(&call(json!(id), tool, args));
        assert!(
            out.iter().all(|a| matches!(a, Action::ToClient(_))),
            "{tool}"
        );
        let r = &to_client(&out)[0];
        assert_eq!(r["result"]["isError"], true);
        let text = r["result"]["content"][0]["text"].as_str().unwrap();
        assert!(text.contains(why), "{text}");
    }
}

/// Stateless MCP (no initialize): the gateway's listing carries the
/// protocol `_meta` of the call that prompted it, follows every page, and
/// the calls waiting meanwhile are decided once it is complete.
#[test]
fn calls_wait_for_the_tool_list_which_follows_pages_and_carries_the_protocol_meta() {
    let mut g = Gateway::new("s", "a", "x");
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "mcp", "version": "0.1.0"},
        "vendor.example/trace": "not copied"
    });
    let first = line(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": "m"}, "_meta": meta}}));
    let out = g.from_client(&first);
    let list = &to_server(&out)[0];
    assert_eq!(list["method"], "tools/list");
    assert_eq!(
        list["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"],
        "2026-07-28"
    );
    assert!(list["params"]["_meta"]
        .get("vendor.example/trace")
        .is_none());
    // A second call waits without a second listing.
    assert!(g
        .from_client(&call(json!(4), "echo", json!({"message": "n"})))
        .is_empty());
    let out = g.from_server(&tools_page(&list["id"], json!([]), Some("p2")));
    let second = to_server(&out);
    assert_eq!(second[0]["params"]["cursor"], "p2");
    assert_eq!(second[0]["params"]["_meta"], list["params"]["_meta"]);
    let decided: Vec<Call> = g
        .from_server(&tools_page(&second[0]["id"], echo_tool(), None))
        .into_iter()
        .filter_map(|a| match a {
            Action::Decide(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(
        decided.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        [json!(3), json!(4)]
    );
    assert_eq!(decided[0].intent["context"]["client"], "mcp 0.1.0");
}

#[test]
fn a_call_cancelled_while_decided_is_dropped() {
    let mut g = ready();
    let c = decide(g.from_client(&call(json!(9), "echo", json!({"message": "m"}))));
    let cancel = line(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}}),
    );
    assert!(g.from_client(&cancel).is_empty());
    assert!(g.decided(c, Outcome::Permit(json!({}))).is_empty());
    // Any other cancellation passes.
    assert_eq!(
        g.from_client(&cancel),
        vec![Action::ToServer(cancel.clone())]
    );
}

#[test]
fn everything_else_passes_both_ways_unchanged() {
    let mut g = ready();
    for m in [
        json!({"jsonrpc": "2.0", "id": 5, "method": "resources/list"}),
        json!({"jsonrpc": "2.0", "id": 6, "method": "tools/list"}),
        json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 2}}),
        json!({"jsonrpc": "2.0", "id": 7, "method": "ping"}),
    ] {
        assert_eq!(g.from_client(&line(&m)), vec![Action::ToServer(line(&m))]);
    }
    for m in [
        json!({"jsonrpc": "2.0", "id": 5, "result": {"resources": []}}),
        json!({"jsonrpc": "2.0", "id": "srv-1", "method": "sampling/createMessage", "params": {}}),
        json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info"}}),
    ] {
        assert_eq!(g.from_server(&line(&m)), vec![Action::ToClient(line(&m))]);
    }
    // A changed list is passed on and fetched again at the next call.
    let changed = line(&json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}));
    assert_eq!(g.from_server(&changed), vec![Action::ToClient(changed)]);
    let out = g.from_client(&call(json!(8), "echo", json!({"message": "m"})));
    assert_eq!(to_server(&out)[0]["method"], "tools/list");
}

#[test]
fn malformed_messages_get_a_json_rpc_error_and_batches_are_refused() {
    let mut g = ready();
    for bad in [
        "not json",
        "{\"id\": 1}",
        "[{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \"tools/call\"}]",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2}",
    ] {
        let r = &to_client(&g.from_client(bad))[0];
        assert!(r["error"]["code"].as_i64().is_some(), "{bad}: {r}");
        let r = &to_server(&g.from_server(bad))[0];
        assert!(r["error"]["code"].as_i64().is_some(), "{bad}: {r}");
    }
}

#[test]
fn action_names_map_deterministically_and_keep_valid_ones() {
    assert_eq!(action_name("echo"), "echo");
    assert_eq!(action_name("get_sum.v2-x"), "get_sum.v2-x");
    let a = action_name("Delete File!");
    assert!(a.starts_with("delete-file-."), "{a}");
    assert_eq!(a, action_name("Delete File!"));
    assert_ne!(action_name("Delete File!"), action_name("delete file?"));
    let b = action_name("9lives");
    assert!(b.starts_with("t-9lives."), "{b}");
    let long = action_name(&"X".repeat(200));
    assert!(long.len() <= 64, "{long}");
    for name in ["Delete File!", "9lives", "ünïcode", &"X".repeat(200)] {
        let intent = json!({
            "actor": {"id": "a", "kind": "agent"}, "surface": "s",
            "action": action_name(name), "target": {}, "idempotency_key": "k",
        });
        protocol::DecisionRequest::parse(intent.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn hide_denied_screens_the_clients_listings_and_nothing_else() {
    let mut g = Gateway::new("everything", "agent-1", "s1").hide_denied();
    let list = line(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"}));
    assert_eq!(g.from_client(&list), vec![Action::ToServer(list.clone())]);
    let answer = tools_page(&json!(7), echo_tool(), None);
    let mut out = g.from_server(&answer);
    assert_eq!(out.len(), 1);
    let Some(Action::Screen(listing)) = out.pop() else {
        panic!("the listing is held for screening")
    };
    let names: Vec<&str> = listing.intents.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["echo", "Delete File!"]);
    let (_, intent) = &listing.intents[1];
    assert_eq!(intent["target"], json!({}));
    assert_eq!(intent["context"]["listing"], true);
    assert_eq!(intent["context"]["destructive"], true);
    assert_eq!(intent["context"]["tool"], "Delete File!");
    assert_eq!(intent["action"], action_name("Delete File!"));
    // Every intent is within the contract.
    for (_, i) in &listing.intents {
        protocol::DecisionRequest::parse(i.to_string().as_bytes()).unwrap();
    }
    let denied: HashSet<String> = ["Delete File!".to_string()].into();
    let shown = to_client(&g.screened(listing, &denied));
    let tools: Vec<&str> = shown[0]["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["echo"]);
    assert_eq!(shown[0]["id"], 7);
    // Another answer with that id is no longer a listing: passed as it is.
    assert_eq!(
        g.from_server(&answer),
        vec![Action::ToClient(answer.clone())]
    );
    // Without hide_denied, listings pass untouched.
    let mut plain = Gateway::new("everything", "agent-1", "s2");
    plain.from_client(&list);
    assert_eq!(plain.from_server(&answer), vec![Action::ToClient(answer)]);
}

/// One PERMIT, one forward: a client that sends the same id again after
/// its call finished is refused (nothing decided, nothing forwarded), and
/// every call's decision has a key of its own, so the gate's idempotency
/// can never hand an earlier PERMIT to a later call.
#[test]
fn every_call_is_decided_anew_and_a_reused_id_is_refused() {
    let mut g = ready();
    let first = call(json!(7), "echo", json!({"message": "pay"}));
    let c = decide(g.from_client(&first));
    let key = c.intent["idempotency_key"].clone();
    assert_eq!(
        to_server(&g.decided(c, Outcome::Permit(json!({})))).len(),
        1
    );
    let answer = line(&json!({"jsonrpc": "2.0", "id": 7, "result": {"content": []}}));
    assert_eq!(to_client(&g.from_server(&answer)).len(), 1);

    // The same id, the same arguments: refused, never decided or forwarded.
    let again = g.from_client(&first);
    assert!(to_server(&again).is_empty());
    assert!(!again.iter().any(|a| matches!(a, Action::Decide(_))));
    let refused = to_client(&again);
    assert_eq!(refused[0]["id"], 7);
    assert_eq!(refused[0]["error"]["code"], -32600);
    assert!(refused[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("already used"));
    // The same id while the first is still being decided: refused too.
    let c2 = decide(g.from_client(&call(json!(8), "echo", json!({"message": "pay"}))));
    assert!(
        to_server(&g.from_client(&call(json!(8), "echo", json!({"message": "pay"})))).is_empty()
    );
    // A new id: a decision of its own, under another key.
    assert_ne!(c2.intent["idempotency_key"], key);
    let c3 = decide(g.from_client(&call(json!("8"), "echo", json!({"message": "pay"}))));
    assert_ne!(c3.intent["idempotency_key"], c2.intent["idempotency_key"]);
}

/// A `tools/call` sent as a notification would be forwarded with no
/// answer to hold a decision in: it is refused; and a client cannot use
/// the gateway's own id space to have an answer taken for the gateway's.
#[test]
fn a_call_without_an_id_and_the_gateways_own_ids_are_refused() {
    let mut g = ready();
    let note = line(&json!({"jsonrpc": "2.0", "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": "x"}}}));
    let out = g.from_client(&note);
    assert!(
        to_server(&out).is_empty(),
        "a notification call was forwarded"
    );
    assert!(!out.iter().any(|a| matches!(a, Action::Decide(_))));
    assert_eq!(to_client(&out)[0]["error"]["code"], -32600);

    for method in ["tools/call", "ping", "tools/list"] {
        let own = line(
            &json!({"jsonrpc": "2.0", "id": "tollgate-tools-1", "method": method,
            "params": {"name": "echo", "arguments": {"message": "x"}}}),
        );
        let out = g.from_client(&own);
        assert!(
            to_server(&out).is_empty(),
            "{method} with the gateway's id was forwarded"
        );
        let refused = to_client(&out);
        assert_eq!(refused[0]["id"], "tollgate-tools-1");
        assert_eq!(refused[0]["error"]["code"], -32600);
    }
}

/// A session remembers a bounded number of call ids: memory stays bounded
/// however long it lives; the newest are still refused on reuse.
#[test]
fn remembered_call_ids_are_bounded() {
    let mut g = Gateway::new("s", "a", "x");
    for i in 0..(REMEMBERED_IDS + 10) {
        assert!(g.remember_call_id(&json!(i)));
    }
    assert_eq!(g.call_ids.len(), REMEMBERED_IDS);
    assert!(
        !g.remember_call_id(&json!(REMEMBERED_IDS + 9)),
        "the newest is refused"
    );
    assert!(g.remember_call_id(&json!(0)), "the oldest was forgotten");
}

#[test]
fn a_result_the_server_sends_again_carries_the_same_decision() {
    // A resumed event stream (Last-Event-ID) replays a result already
    // delivered: it carries the decision as the first delivery did.
    let mut g = ready();
    let c = decide(g.from_client(&call(json!(8), "echo", json!({"message": "again"}))));
    let decision = json!({"decision": "PERMIT", "receipt_id": "r8"});
    g.decided(c, Outcome::Permit(decision.clone()));
    let result = json!({"jsonrpc": "2.0", "id": 8, "result": {"content": []}});
    for _ in 0..2 {
        let out = to_client(&g.from_server(&line(&result)));
        assert_eq!(out[0]["result"]["_meta"][META_KEY], decision);
    }
    // Only the latest results are kept for it: an old one passes as sent.
    for i in 100..100 + DELIVERED_KEPT as i64 {
        let c = decide(g.from_client(&call(json!(i), "echo", json!({"message": "x"}))));
        g.decided(c, Outcome::Permit(json!({"decision": "PERMIT"})));
        g.from_server(&line(&json!({"jsonrpc": "2.0", "id": i, "result": {}})));
    }
    let out = to_client(&g.from_server(&line(&result)));
    assert!(out[0]["result"].get("_meta").is_none());
}
