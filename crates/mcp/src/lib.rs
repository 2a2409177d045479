//! The MCP gateway's core, sans-IO: every `tools/call` an MCP client sends
//! becomes a decision of the gate, and only a verified PERMIT reaches the
//! server; everything else of the protocol passes unchanged both ways.
//!
//! [`Gateway`] takes each line (one JSON-RPC message, MCP's stdio framing)
//! from either side and answers with [`Action`]s: lines to send on, and
//! [`Call`]s to decide. The driver (`tollgate mcp stdio`) does the I/O and
//! asks the gate; it hands each outcome back with [`Gateway::decided`].
//!
//! What is gated, and how:
//! - The gateway learns the server's tools itself: at the first `tools/call`
//!   (and the first after `notifications/tools/list_changed`) it sends the
//!   server its own `tools/list` (ids `tollgate-tools-N`, answered to it
//!   alone, every page followed, carrying the protocol `_meta` of the call
//!   that prompted it: stateless MCP sends version and capabilities with
//!   every request). Calls wait for the list.
//! - A call of a tool not listed, or whose arguments do not meet the tool's
//!   `inputSchema`, is refused here: neither the gate nor the server sees it.
//! - Otherwise the call becomes an intent ([`Gateway::intent`]): actor as
//!   configured, surface = the server's name, action = the tool's name
//!   ([`action_name`]), target = the arguments, context = the tool's
//!   annotations and the client, idempotency key fresh for every call (the
//!   session and the call's sequence number, never the client's id): one
//!   decision authorizes one forward, and a second call, whatever its id,
//!   is decided again.
//! - A `tools/call` that is not a request (a notification, no id) is
//!   refused, as is a request id the client already used in this session
//!   (JSON-RPC: ids are unique per session) or one in the gateway's own id
//!   space (strings starting `tollgate-tools-`): no id can route a second
//!   answer, or an answer meant for the gateway, around the gate.
//! - A verified PERMIT forwards the call; the server's result carries the
//!   decision (receipt and tlog-proof) in `_meta["dev.tollgate/decision"]`.
//!   DENY, SILENCE, an answer that does not verify and an unreachable gate
//!   are a tool result with `isError: true` naming the decision, the reason
//!   and the receipt (with the decision in `_meta` when there is one); the
//!   server never sees the call.
//! - A call cancelled (`notifications/cancelled`) while it is being decided
//!   is dropped, whatever the decision.
//! - A line that is not a JSON-RPC message gets a JSON-RPC error back to
//!   whoever sent it; batches (JSON arrays) are refused the same way, so no
//!   call can pass inside one.

use std::collections::{HashMap, HashSet, VecDeque};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub mod sse;

/// The `_meta` member that carries the gate's decision (a decision response).
pub const META_KEY: &str = "dev.tollgate/decision";

/// Prefix of the ids of the gateway's own requests to the server.
const OWN_ID: &str = "tollgate-tools-";

/// How many `tools/call` ids a session remembers to refuse their reuse; past
/// it the oldest is forgotten. Memory stays bounded, and a reused id is
/// never forwarded on an old decision anyway: every call is decided anew.
const REMEMBERED_IDS: usize = 65_536;
/// The decisions of this many of the latest permitted results are kept
/// after their delivery, so a result the server sends again (a resumed
/// event stream, `Last-Event-ID`) carries its decision as the first did.
const DELIVERED_KEPT: usize = 256;

/// What the driver does next.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Send this line to the client.
    ToClient(String),
    /// Send this line to the server.
    ToServer(String),
    /// Ask the gate about this call; hand the outcome to [`Gateway::decided`].
    Decide(Call),
    /// With `hide_denied`: evaluate (unlogged) each tool of a `tools/list`
    /// answer; hand the tools denied to [`Gateway::screened`].
    Screen(Listing),
}

/// A `tools/list` answer held back until its tools are screened.
#[derive(Clone, Debug, PartialEq)]
pub struct Listing {
    /// The server's answer, parsed.
    message: Value,
    /// Each listed tool's name and the request to evaluate for it: the
    /// arguments unknown (`target` = `{}`), `context.listing` = true.
    pub intents: Vec<(String, Value)>,
}

/// A `tools/call` to decide.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// The JSON-RPC id, as the client sent it.
    pub id: Value,
    /// The tool's name.
    pub tool: String,
    /// The W3C trace context the client sent in `params._meta`
    /// (`traceparent`, `tracestate`), as the MCP specification lets clients
    /// carry it: the gateway's span for the call continues that trace.
    pub trace: Vec<(String, String)>,
    /// The decision request to send to the gate.
    pub intent: Value,
    /// The client's message, forwarded as it is on PERMIT.
    message: String,
}

/// What the gate said about a [`Call`].
#[derive(Debug)]
pub enum Outcome {
    /// A verified PERMIT; the decision response (receipt and proof).
    Permit(Value),
    /// A verified DENY or SILENCE: the decision, its reason and the response.
    Refused {
        /// `DENY` or `SILENCE`.
        decision: String,
        /// The policy's reason.
        reason: String,
        /// The decision response (receipt and proof).
        response: Value,
    },
    /// No verified decision: the gate unreachable, an error, or an answer
    /// that does not verify. Fails closed.
    Failed(String),
}

/// What the gateway knows of a tool.
struct Tool {
    validator: Result<jsonschema::Validator, String>,
    annotations: Value,
}

/// One gateway between one client and one server.
pub struct Gateway {
    server: String,
    actor: String,
    session: String,
    client: Option<String>,
    /// `None` until the first complete list arrives.
    tools: Option<HashMap<String, Tool>>,
    /// The list being gathered, page by page.
    gathering: Option<HashMap<String, Tool>>,
    /// The protocol `_meta` the gathering sends with each page.
    list_meta: Value,
    /// The list changed while it was being gathered: gather it again.
    regather: bool,
    next_own_id: u64,
    /// `tools/call` requests decided so far: each decision's idempotency
    /// key is the session and this number.
    calls: u64,
    /// The ids of the `tools/call` requests the client sent (JSON text),
    /// the newest [`REMEMBERED_IDS`]: an id is used once per session.
    call_ids: HashSet<String>,
    /// The same ids, oldest first.
    call_id_order: VecDeque<String>,
    /// Calls waiting for the tool list.
    waiting: Vec<(Value, Value, String)>,
    /// Calls being decided, by id (their JSON text).
    deciding: HashSet<String>,
    cancelled: HashSet<String>,
    /// Calls forwarded on PERMIT: id → the decision response.
    permitted: HashMap<String, Value>,
    /// Results delivered: id → their decision, the latest [`DELIVERED_KEPT`]
    /// (oldest first in `delivered_order`), for a result sent again.
    delivered: HashMap<String, Value>,
    delivered_order: VecDeque<String>,
    /// Whether `tools/list` answers omit the tools the policy denies.
    hide_denied: bool,
    /// The client's `tools/list` requests awaiting their answer (ids).
    listings: HashSet<String>,
}

impl Gateway {
    /// A gateway for the server named `server` (the surface), deciding for
    /// `actor`; `session` makes idempotency keys unique to this gateway run.
    #[must_use]
    pub fn new(server: &str, actor: &str, session: &str) -> Gateway {
        Gateway {
            server: server.to_string(),
            actor: actor.to_string(),
            session: session.to_string(),
            client: None,
            tools: None,
            gathering: None,
            list_meta: Value::Null,
            regather: false,
            next_own_id: 0,
            calls: 0,
            call_ids: HashSet::new(),
            call_id_order: VecDeque::new(),
            waiting: Vec::new(),
            deciding: HashSet::new(),
            cancelled: HashSet::new(),
            permitted: HashMap::new(),
            delivered: HashMap::new(),
            delivered_order: VecDeque::new(),
            hide_denied: false,
            listings: HashSet::new(),
        }
    }

    /// `tools/list` answers to the client omit every tool the policy denies
    /// this actor outright: each listed tool is evaluated (never logged)
    /// with the arguments unknown (`target` = `{}`) and `context.listing` =
    /// true, and a DENY hides it. PERMIT, SILENCE or a failed evaluation
    /// shows it; calls are decided as always, hidden or not.
    #[must_use]
    pub fn hide_denied(mut self) -> Gateway {
        self.hide_denied = true;
        self
    }

    /// The held `listing` without the tools in `denied`.
    pub fn screened(&mut self, listing: Listing, denied: &HashSet<String>) -> Vec<Action> {
        let mut message = listing.message;
        if let Some(tools) = message["result"]["tools"].as_array_mut() {
            tools.retain(|t| !t["name"].as_str().is_some_and(|n| denied.contains(n)));
        }
        vec![Action::ToClient(message.to_string())]
    }

    /// A line from the client.
    pub fn from_client(&mut self, line: &str) -> Vec<Action> {
        let message = match parse(line) {
            Ok(m) => m,
            Err(e) => return vec![Action::ToClient(e)],
        };
        let method = message.get("method").and_then(Value::as_str);
        let id = message.get("id").cloned();
        if let (Some(_), Some(id)) = (method, &id) {
            if id.as_str().is_some_and(|s| s.starts_with(OWN_ID)) {
                return vec![Action::ToClient(rpc_error(
                    id,
                    -32600,
                    &format!("invalid request (tollgate mcp): ids starting {OWN_ID:?} are the gateway's own"),
                ))];
            }
        }
        match (method, id) {
            (Some("initialize"), Some(_)) => {
                self.client_info(&message["params"]["clientInfo"]);
                vec![Action::ToServer(line.to_string())]
            }
            (Some("notifications/cancelled"), None) => {
                let target = &message["params"]["requestId"];
                let key = target.to_string();
                if self.deciding.contains(&key) {
                    self.cancelled.insert(key);
                    Vec::new()
                } else {
                    // A call still waiting for the tool list is dropped.
                    self.waiting.retain(|(id, _, _)| id != target);
                    vec![Action::ToServer(line.to_string())]
                }
            }
            (Some("tools/call"), Some(id)) => {
                if !self.remember_call_id(&id) {
                    return vec![Action::ToClient(rpc_error(
                        &id,
                        -32600,
                        &format!(
                            "invalid request (tollgate mcp): request id {id} was already used in \
                             this session; every tools/call needs a new id"
                        ),
                    ))];
                }
                self.call(id, message["params"].clone(), line)
            }
            (Some("tools/call"), None) => vec![Action::ToClient(rpc_error(
                &Value::Null,
                -32600,
                "invalid request (tollgate mcp): a tools/call must be a request with an id; \
                 sent as a notification it was not forwarded",
            ))],
            (Some("tools/list"), Some(id)) if self.hide_denied => {
                self.listings.insert(id.to_string());
                vec![Action::ToServer(line.to_string())]
            }
            _ => vec![Action::ToServer(line.to_string())],
        }
    }

    /// A line from the server.
    pub fn from_server(&mut self, line: &str) -> Vec<Action> {
        let mut message = match parse(line) {
            Ok(m) => m,
            Err(e) => return vec![Action::ToServer(e)],
        };
        let is_response = message.get("method").is_none();
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        if is_response && id.as_str().is_some_and(|s| s.starts_with(OWN_ID)) {
            return self.tools_listed(&message);
        }
        if message.get("method").and_then(Value::as_str) == Some("notifications/tools/list_changed")
        {
            // Fetched again at the next call; one being gathered is stale.
            self.tools = None;
            self.regather = self.gathering.is_some();
            return vec![Action::ToClient(line.to_string())];
        }
        if is_response && self.listings.remove(&id.to_string()) {
            let tools = message["result"]["tools"].as_array().cloned();
            if let Some(tools) = tools.filter(|t| !t.is_empty()) {
                let intents = tools
                    .iter()
                    .filter_map(|t| Some((t["name"].as_str()?.to_string(), self.listing_intent(t))))
                    .collect();
                return vec![Action::Screen(Listing { message, intents })];
            }
        }
        if is_response {
            // A call id is used once per session, so a result for a call
            // already answered is the server sending it again (a resumed
            // stream): it carries the same decision.
            let key = id.to_string();
            let decision = match self.permitted.remove(&key) {
                Some(d) => {
                    self.delivered(key, d.clone());
                    Some(d)
                }
                None => self.delivered.get(&key).cloned(),
            };
            if let Some(decision) = decision {
                if let Some(result) = message.get_mut("result").and_then(Value::as_object_mut) {
                    let meta = result.entry("_meta").or_insert_with(|| json!({}));
                    if let Some(meta) = meta.as_object_mut() {
                        meta.insert(META_KEY.into(), decision);
                    }
                    return vec![Action::ToClient(message.to_string())];
                }
            }
        }
        vec![Action::ToClient(line.to_string())]
    }

    /// The gate's outcome for `call`.
    pub fn decided(&mut self, call: Call, outcome: Outcome) -> Vec<Action> {
        let key = call.id.to_string();
        self.deciding.remove(&key);
        if self.cancelled.remove(&key) {
            return Vec::new();
        }
        match outcome {
            Outcome::Permit(response) => {
                self.permitted.insert(key, response);
                vec![Action::ToServer(call.message)]
            }
            Outcome::Refused {
                decision,
                reason,
                response,
            } => {
                let receipt = response["receipt_id"].as_str().unwrap_or("?").to_string();
                vec![Action::ToClient(refusal(
                    &call.id,
                    &format!("Tollgate: {decision}: {reason} (receipt {receipt})"),
                    Some(response),
                ))]
            }
            Outcome::Failed(why) => vec![Action::ToClient(refusal(
                &call.id,
                &format!("Tollgate: SILENCE: no verified decision: {why}"),
                None,
            ))],
        }
    }

    /// The decision request for the `seq`-th call of this session, of
    /// `tool` with `arguments`. Its idempotency key is the session's and
    /// `seq`'s, so every call gets a decision of its own; a retry of the
    /// same decision request (the driver's, on a transport error) reuses it.
    #[must_use]
    pub fn intent(&self, seq: u64, tool: &str, arguments: &Value) -> Value {
        let annotations = self
            .tools
            .as_ref()
            .and_then(|t| t.get(tool))
            .map_or(&Value::Null, |t| &t.annotations);
        let context = self.context(tool, annotations);
        let key = Sha256::digest(format!("{}\0call-{seq}", self.session).as_bytes());
        json!({
            "actor": {"id": self.actor, "kind": "agent"},
            "surface": self.server,
            "action": action_name(tool),
            "target": arguments,
            "context": context,
            "idempotency_key": format!("mcp-{}", hex::encode(&key[..16])),
        })
    }

    /// The request evaluated for a listed `tool` (as `tools/list` gives
    /// it) under `hide_denied`: arguments unknown, `context.listing`.
    fn listing_intent(&self, tool: &Value) -> Value {
        let name = tool["name"].as_str().unwrap_or("");
        let mut context = self.context(name, &tool["annotations"]);
        context.insert("listing".into(), json!(true));
        json!({
            "actor": {"id": self.actor, "kind": "agent"},
            "surface": self.server,
            "action": action_name(name),
            "target": {},
            "context": context,
            // Required by the contract; an evaluation is never logged.
            "idempotency_key": "mcp-listing",
        })
    }

    /// The context of a decision about `tool`: its exact name, the client,
    /// and its annotations as `read_only`/`destructive`/`idempotent`/`open_world`.
    fn context(&self, tool: &str, annotations: &Value) -> serde_json::Map<String, Value> {
        let mut context = serde_json::Map::new();
        context.insert("tool".into(), json!(tool));
        if let Some(client) = &self.client {
            context.insert("client".into(), json!(client));
        }
        for (hint, key) in [
            ("readOnlyHint", "read_only"),
            ("destructiveHint", "destructive"),
            ("idempotentHint", "idempotent"),
            ("openWorldHint", "open_world"),
        ] {
            if let Some(b) = annotations.get(hint).and_then(Value::as_bool) {
                context.insert(key.into(), json!(b));
            }
        }
        context
    }

    fn call(&mut self, id: Value, params: Value, line: &str) -> Vec<Action> {
        self.client_info(&params["_meta"]["io.modelcontextprotocol/clientInfo"]);
        if self.tools.is_none() {
            let meta = protocol_meta(&params["_meta"]);
            self.waiting.push((id, params, line.to_string()));
            if self.gathering.is_none() {
                self.list_meta = meta;
                return vec![self.list_tools(None)];
            }
            return Vec::new();
        }
        let tool = params["name"].as_str().unwrap_or("").to_string();
        let arguments = match params.get("arguments") {
            None | Some(Value::Null) => json!({}),
            Some(a) => a.clone(),
        };
        let known = self.tools.as_ref().and_then(|t| t.get(&tool));
        let Some(known) = known else {
            return vec![Action::ToClient(refusal(
                &id,
                &format!("Tollgate: the server lists no tool {tool:?}; not called"),
                None,
            ))];
        };
        let invalid = match &known.validator {
            Err(e) => Some(format!(
                "the server's inputSchema for {tool:?} does not compile: {e}"
            )),
            Ok(v) => v.iter_errors(&arguments).next().map(|e| {
                let at = e.instance_path.to_string();
                format!(
                    "invalid arguments for {tool:?} at {}: {e}",
                    if at.is_empty() { "/" } else { &at }
                )
            }),
        };
        if let Some(why) = invalid {
            return vec![Action::ToClient(refusal(
                &id,
                &format!("Tollgate: {why}; not called"),
                None,
            ))];
        }
        self.deciding.insert(id.to_string());
        self.calls += 1;
        let trace = ["traceparent", "tracestate"]
            .into_iter()
            .filter_map(|k| Some((k.to_string(), params["_meta"][k].as_str()?.to_string())))
            .collect();
        vec![Action::Decide(Call {
            intent: self.intent(self.calls, &tool, &arguments),
            tool,
            trace,
            id,
            message: line.to_string(),
        })]
    }

    /// The gateway's own `tools/list` to the server (from `cursor`).
    fn list_tools(&mut self, cursor: Option<&str>) -> Action {
        self.next_own_id += 1;
        if cursor.is_none() {
            self.gathering = Some(HashMap::new());
        }
        let mut params = cursor.map_or_else(|| json!({}), |c| json!({"cursor": c}));
        if !self.list_meta.is_null() {
            params["_meta"] = self.list_meta.clone();
        }
        Action::ToServer(
            json!({
                "jsonrpc": "2.0",
                "id": format!("{OWN_ID}{}", self.next_own_id),
                "method": "tools/list",
                "params": params,
            })
            .to_string(),
        )
    }

    /// The server's answer to the gateway's own `tools/list`.
    fn tools_listed(&mut self, message: &Value) -> Vec<Action> {
        let Some(gathering) = self.gathering.as_mut() else {
            return Vec::new();
        };
        for t in message["result"]["tools"].as_array().into_iter().flatten() {
            let Some(name) = t["name"].as_str() else {
                continue;
            };
            let schema = t.get("inputSchema").cloned().unwrap_or_else(|| json!({}));
            gathering.insert(
                name.to_string(),
                Tool {
                    validator: jsonschema::validator_for(&schema).map_err(|e| e.to_string()),
                    annotations: t.get("annotations").cloned().unwrap_or(Value::Null),
                },
            );
        }
        if message.get("error").is_some() {
            // No list: nothing can be validated, so every call is refused
            // as naming an unknown tool until a list arrives.
            self.gathering = None;
            self.tools = Some(HashMap::new());
        } else if let Some(cursor) = message["result"]["nextCursor"].as_str() {
            return vec![self.list_tools(Some(cursor))];
        } else if std::mem::take(&mut self.regather) {
            return vec![self.list_tools(None)];
        } else {
            self.tools = self.gathering.take();
        }
        let waiting = std::mem::take(&mut self.waiting);
        waiting
            .into_iter()
            .flat_map(|(id, params, line)| self.call(id, params, &line))
            .collect()
    }
}

impl Gateway {
    /// Keeps the decision of a result just delivered, the latest
    /// [`DELIVERED_KEPT`].
    fn delivered(&mut self, key: String, decision: Value) {
        if self.delivered.insert(key.clone(), decision).is_none() {
            self.delivered_order.push_back(key);
        }
        if self.delivered_order.len() > DELIVERED_KEPT {
            if let Some(oldest) = self.delivered_order.pop_front() {
                self.delivered.remove(&oldest);
            }
        }
    }

    /// Remembers the id of a `tools/call`; false if it was used before.
    fn remember_call_id(&mut self, id: &Value) -> bool {
        let key = id.to_string();
        if !self.call_ids.insert(key.clone()) {
            return false;
        }
        self.call_id_order.push_back(key);
        if self.call_id_order.len() > REMEMBERED_IDS {
            if let Some(oldest) = self.call_id_order.pop_front() {
                self.call_ids.remove(&oldest);
            }
        }
        true
    }

    /// Keeps the client's name and version (from `initialize`, or a
    /// stateless request's `_meta`) for the decisions' context.
    fn client_info(&mut self, info: &Value) {
        if let Some(n) = info["name"].as_str() {
            let v = info["version"].as_str().unwrap_or("");
            self.client = Some(format!("{n} {v}").trim().to_string());
        }
    }
}

/// The protocol's own members of a request's `_meta`
/// (`io.modelcontextprotocol/…`: version, client info, capabilities).
fn protocol_meta(meta: &Value) -> Value {
    let kept: serde_json::Map<String, Value> = meta
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("io.modelcontextprotocol/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if kept.is_empty() {
        Value::Null
    } else {
        Value::Object(kept)
    }
}

/// The contract's action for a tool name: the name if it already is one (a
/// lowercase letter, then lowercase letters, digits, `_ . -`, at most 64);
/// otherwise lowercased, every other character `-`, a leading `t-` if it
/// does not start with a letter, and `.` plus 8 hex digits of the name's
/// SHA-256 so two names never map to one action (cut to 64 in all). The
/// original name is in `context.tool`.
#[must_use]
pub fn action_name(tool: &str) -> String {
    let valid = |s: &str| {
        s.len() <= 64
            && s.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
            && s.bytes().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'.' | b'-')
            })
    };
    if valid(tool) {
        return tool.to_string();
    }
    let mut base: String = tool
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !base.starts_with(|c: char| c.is_ascii_lowercase()) {
        base.insert_str(0, "t-");
    }
    base.truncate(64 - 9);
    let digest = Sha256::digest(tool.as_bytes());
    format!("{base}.{}", hex::encode(&digest[..4]))
}

/// A JSON-RPC message, or the error line to send back to its sender.
fn parse(line: &str) -> Result<Value, String> {
    let error = |code: i64, message: &str| {
        json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}})
            .to_string()
    };
    let value: Value = protocol::strict::from_slice(line.as_bytes())
        .map_err(|e| error(-32700, &format!("parse error (tollgate mcp): {e}")))?;
    match &value {
        Value::Object(m) if m.get("jsonrpc").and_then(Value::as_str) == Some("2.0") => Ok(value),
        Value::Array(_) => Err(error(
            -32600,
            "invalid request (tollgate mcp): JSON-RPC batches are not supported",
        )),
        _ => Err(error(
            -32600,
            "invalid request (tollgate mcp): not a JSON-RPC 2.0 message",
        )),
    }
}

/// A JSON-RPC error answer to request `id`.
fn rpc_error(id: &Value, code: i64, message: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string()
}

/// A tool result that is an error: `text`, and the decision in `_meta`.
fn refusal(id: &Value, text: &str, decision: Option<Value>) -> String {
    // `resultType` is required from protocol 2026-07-28 on; earlier
    // versions allow any extra member in a result.
    let mut result = json!({
        "content": [{"type": "text", "text": text}],
        "isError": true,
        "resultType": "complete",
    });
    if let Some(d) = decision {
        result["_meta"] = json!({ META_KEY: d });
    }
    json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()
}

#[cfg(test)]
mod tests;
