/**
 * The portal: a page the gate serves for the people in the loop. Every
 * check runs here, in the browser, on keys the person pinned (kept in this
 * browser's localStorage, shown as fingerprints); the server's word is only
 * shown beside it, labelled as its claim. The caller token lives in this
 * tab's sessionStorage only, and goes to the gate's own API in the
 * Authorization header, never in a URL or a cookie.
 *
 * Bundled with the verifier by `npm run portal` into
 * crates/gate/portal/app.js, which `tollgate serve` embeds.
 */

import {
  type Json,
  type JsonObject,
  Policy,
  type Receipt,
  Verifier,
  b64decode,
  b64encode,
  canonicalJson,
  checkOpenings,
  hex,
  isObject,
  noteSigners,
  parseCheckpoint,
  sha256,
  strictJson,
  verifyConsistency,
  verifyDecision,
  verifyNote,
  verifyProofBundle,
  verifyReceipt,
} from "../src/verify/index.js";

// ---------------------------------------------------------------- the page

type Child = Node | string | null | undefined | false;

/** An element; text is always text (never parsed as HTML). */
function h(tag: string, attrs: Record<string, string | ((e: Event) => void)> = {}, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (typeof v === "function") el.addEventListener(k, v);
    else el.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

/** A value as text: strings as they are, anything else as JSON. */
function str(v: unknown): string {
  if (typeof v === "string") return v;
  if (v === undefined) return "";
  if (typeof v === "number" || typeof v === "bigint" || typeof v === "boolean") return v.toString();
  try {
    return canonicalJson(v);
  } catch {
    return "?";
  }
}

const main = (): HTMLElement => document.getElementById("main") as HTMLElement;
const pretty = (v: unknown): string => JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? x.toString() : x), 2);
const message = (e: unknown): string => (e instanceof Error ? e.message : str(e));
let timers: number[] = [];

function show(...children: Child[]): void {
  for (const t of timers) clearInterval(t);
  timers = [];
  main().replaceChildren(...children.filter((c): c is Node | string => !!c));
}

// ---------------------------------------------------------------- what the person pinned, and the token

interface TrustSettings {
  log_key: string;
  gate_key: string;
  witness_policy?: string;
}

const TRUST = "tollgate.portal.trust";
const SEEN = "tollgate.portal.seen";
const TOKEN = "tollgate.portal.token";

function trustSettings(): TrustSettings | null {
  try {
    const t = JSON.parse(localStorage.getItem(TRUST) ?? "null") as TrustSettings | null;
    return t && t.log_key && t.gate_key ? t : null;
  } catch {
    return null;
  }
}

interface Keys {
  log: Verifier;
  gate: Verifier;
  witnesses: Policy | null;
}

function keys(): Keys | null {
  const t = trustSettings();
  if (!t) return null;
  return {
    log: Verifier.parse(t.log_key),
    gate: Verifier.parse(t.gate_key),
    witnesses: t.witness_policy ? Policy.parse(t.witness_policy) : null,
  };
}

function fingerprint(v: Verifier): string {
  return `${v.name} · key id ${hex(v.keyId)} · SHA-256 ${hex(sha256(v.publicKey)).slice(0, 16)}…`;
}

const token = (): string | null => sessionStorage.getItem(TOKEN);

async function api(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const t = token();
  if (t) headers.set("authorization", `Bearer ${t}`);
  return fetch(path, { ...init, headers, cache: "no-store" });
}

async function apiJson(path: string, init: RequestInit = {}): Promise<Json> {
  const r = await api(path, init);
  const text = await r.text();
  if (!r.ok) throw new Error(`${path}: ${r.status} ${text.trim()}`);
  return strictJson(text);
}

interface Me {
  name: string;
  roles: string[];
}
let me: Me | null = null;

async function whoami(): Promise<Me | null> {
  if (!token()) return (me = null);
  try {
    me = (await apiJson("/v1/whoami")) as unknown as Me;
  } catch {
    me = null;
  }
  renderWho();
  return me;
}

function renderWho(): void {
  const who = document.getElementById("who") as HTMLElement;
  if (me) {
    who.replaceChildren(
      `Signed in as ${me.name} (${me.roles.join(", ")}) `,
      h("button", { id: "sign-out", click: () => { sessionStorage.removeItem(TOKEN); me = null; renderWho(); route(); } }, "Sign out"),
    );
  } else {
    who.replaceChildren(h("a", { href: "#/approvals" }, "Sign in"));
  }
}

function signIn(then: () => void): HTMLElement {
  const input = h("input", { type: "password", id: "token", autocomplete: "off", placeholder: "caller token" }) as HTMLInputElement;
  const status = h("p", { class: "muted" }, "The token stays in this tab (sessionStorage) and is sent only to this gate's API.");
  const form = h(
    "form",
    {
      submit: (e) => {
        e.preventDefault();
        sessionStorage.setItem(TOKEN, input.value.trim());
        void whoami().then((who) => {
          if (who) then();
          else {
            sessionStorage.removeItem(TOKEN);
            status.textContent = "The gate does not know this token.";
            status.className = "bad";
          }
        });
      },
    },
    h("label", {}, "Caller token ", input),
    h("button", { type: "submit", id: "sign-in" }, "Sign in"),
  );
  return h("div", { class: "card" }, h("h2", {}, "Sign in"), form, status);
}

function needKeys(): HTMLElement {
  return h("p", { class: "bad" }, "Pin the log and gate keys first (", h("a", { href: "#/keys" }, "Keys"), "): nothing is verified with keys the server hands out.");
}

// ---------------------------------------------------------------- keys view

function keysView(): void {
  const t = trustSettings();
  const log = h("input", { type: "text", id: "log-key", value: t?.log_key ?? "" }) as HTMLInputElement;
  const gate = h("input", { type: "text", id: "gate-key", value: t?.gate_key ?? "" }) as HTMLInputElement;
  const policy = h("textarea", { id: "witness-policy", placeholder: "optional C2SP tlog-policy (log, witness, group, quorum lines)" }) as HTMLTextAreaElement;
  policy.value = t?.witness_policy ?? "";
  const status = h("div", {});
  const current = h("div", {});
  const list = (): void => {
    const k = keys();
    current.replaceChildren(
      k
        ? h("ul", {}, h("li", {}, "Log: " + fingerprint(k.log)), h("li", {}, "Gate: " + fingerprint(k.gate)),
            h("li", {}, k.witnesses ? `Witness policy: ${k.witnesses.witnesses.size} witness(es), quorum ${k.witnesses.quorum ?? "none"}` : "No witness policy"))
        : h("p", {}, "No keys pinned yet."),
    );
  };
  const save = (s: TrustSettings): void => {
    try {
      Verifier.parse(s.log_key);
      Verifier.parse(s.gate_key);
      if (s.witness_policy) Policy.parse(s.witness_policy);
      localStorage.setItem(TRUST, JSON.stringify(s));
      status.replaceChildren(h("p", { class: "ok" }, "✓ Pinned in this browser."));
      list();
    } catch (e) {
      status.replaceChildren(h("p", { class: "bad" }, "✗ " + message(e)));
    }
  };
  const file = h("input", { type: "file", id: "trust-file", accept: ".json,application/json" }) as HTMLInputElement;
  file.addEventListener("change", () => {
    void file.files?.[0]?.text().then((text) => {
      try {
        const o = strictJson(text) as unknown as TrustSettings;
        log.value = o.log_key;
        gate.value = o.gate_key;
        policy.value = o.witness_policy ?? "";
        save(o);
      } catch (e) {
        status.replaceChildren(h("p", { class: "bad" }, "✗ trust file: " + message(e)));
      }
    });
  });
  list();
  show(
    h("h1", {}, "Keys"),
    h("p", {}, "The keys every check uses, as `tollgate serve` prints them. They are kept in this browser; the portal never takes them from the server."),
    current,
    h("div", { class: "card" },
      h("label", {}, "Log key ", log), h("label", {}, "Gate key ", gate), h("label", {}, "Witness policy ", policy),
      h("button", { id: "pin", click: () => save({ log_key: log.value.trim(), gate_key: gate.value.trim(), ...(policy.value.trim() ? { witness_policy: policy.value } : {}) }) }, "Pin these keys"),
      h("p", {}, "Or load a trust file (JSON: log_key, gate_key, witness_policy): ", file)),
    status,
  );
}

// ---------------------------------------------------------------- verify view

interface Check {
  name: string;
  ok: boolean | null;
  detail: string;
}

function attempt(checks: Check[], name: string, run: () => string | void): boolean {
  try {
    const detail = run();
    checks.push({ name, ok: true, detail: detail ?? "" });
    return true;
  } catch (e) {
    checks.push({ name, ok: false, detail: message(e) });
    return false;
  }
}

/** Every check of a decision answer, a {receipt, proof} pair or a bare receipt. */
function checkInput(input: string, k: Keys): { checks: Check[]; receipt: Receipt | null; response: JsonObject | null } {
  const checks: Check[] = [];
  let response: JsonObject | null = null;
  let receipt: string;
  let proof: string | null = null;
  try {
    const parsed = strictJson(input.trim());
    if (!isObject(parsed) || typeof parsed["receipt"] !== "string") throw new Error("not a decision answer");
    receipt = parsed["receipt"];
    proof = typeof parsed["proof"] === "string" ? parsed["proof"] : null;
    if ("decision" in parsed) response = parsed;
  } catch {
    receipt = input.trim() + "\n";
    if (!receipt.includes("\n\n\u2014 ")) {
      checks.push({ name: "Input", ok: false, detail: "neither a decision answer (JSON) nor a receipt (a signed note)" });
      return { checks, receipt: null, response: null };
    }
  }
  let body: Receipt | null = null;
  attempt(checks, `Signed by the gate key (${fingerprint(k.gate)})`, () => void verifyNote(receipt, k.gate));
  attempt(checks, "Receipt: canonical JSON, request contract, request digest, receipt id", () => {
    body = verifyReceipt(receipt, k.gate);
  });
  if (proof === null) {
    checks.push({ name: "In the log (tlog-proof to a checkpoint signed by the log key)", ok: null, detail: "no proof given" });
  } else {
    const p = proof;
    attempt(checks, `In the log: inclusion proof to a checkpoint signed by the log key (${fingerprint(k.log)})`, () => {
      const bundle = verifyProofBundle(receipt, p, k.log);
      return `index ${bundle.index}`;
    });
    if (k.witnesses) {
      const w = k.witnesses;
      attempt(checks, "Witnessed: the checkpoint is cosigned to the pinned policy's quorum", () => void verifyProofBundle(receipt, p, k.log, w));
    } else {
      checks.push({ name: "Witnessed", ok: null, detail: "no witness policy pinned (Keys)" });
    }
  }
  if (body !== null) {
    const b: Receipt = body;
    if (b.log !== k.log.name) checks.push({ name: "The receipt names the pinned log", ok: false, detail: `it names ${b.log}` });
  }
  if (response) {
    const r = response;
    attempt(checks, "The answer says what the receipt says (decision, reason, ids, log index)", () => void verifyDecision(r, k.log, k.gate));
  }
  if (body !== null) {
    // Fields the receipt commits (sensitive in the surface contract): each
    // opening given is checked against its commitment here.
    const b: Receipt = body;
    const openings = response ? response["openings"] : undefined;
    let status: Record<string, string> = {};
    try {
      status = checkOpenings(b, openings);
    } catch (e) {
      checks.push({ name: "Openings of committed fields", ok: false, detail: message(e) });
    }
    for (const [field, state] of Object.entries(status)) {
      const value = isObject(openings) && isObject(openings[field]) ? canonicalJson(openings[field]["value"] ?? null) : "";
      checks.push(
        state === "opened"
          ? { name: `${field}: committed, opening verified`, ok: true, detail: value }
          : { name: `${field}: committed, opening erased`, ok: null, detail: response ? "the gate no longer holds its value" : "no opening given" },
      );
    }
  }
  return { checks, receipt: body, response };
}

function checkList(checks: Check[]): HTMLElement {
  return h(
    "table", { id: "checks" },
    ...checks.map((c) =>
      h("tr", { class: c.ok === false ? "check-failed" : c.ok ? "check-passed" : "check-skipped" },
        h("td", { class: c.ok === false ? "bad" : c.ok ? "ok" : "muted" }, c.ok === false ? "✗" : c.ok ? "✓" : "–"),
        h("td", {}, c.name), h("td", { class: "muted" }, c.detail)),
    ),
  );
}

function receiptSummary(b: Receipt): HTMLElement {
  const req = b.request;
  const policy = isObject(b["policy"]) ? b["policy"] : null;
  const derived = isObject(b.derived) ? b.derived : {};
  const caller = isObject(derived["caller"]) ? derived["caller"] : {};
  return h("div", { class: "card", id: "receipt" },
    h("h2", { class: `decision-${b.decision}`, id: "decision" }, b.decision),
    h("p", {}, `Reason: ${typeof b.reason === "string" ? b.reason : canonicalJson(b.reason)}`),
    h("table", {},
      h("tr", {}, h("th", {}, "Receipt"), h("td", {}, b.receipt_id)),
      h("tr", {}, h("th", {}, "Decided at"), h("td", {}, str(b.decided_at))),
      h("tr", {}, h("th", {}, "Caller"), h("td", {}, `${str(caller["name"] ?? "?")} (via ${str(caller["via"] ?? "?")})`)),
      h("tr", {}, h("th", {}, "Actor"), h("td", {}, canonicalJson(req["actor"]))),
      h("tr", {}, h("th", {}, "Call"), h("td", {}, `${str(req["surface"])} · ${str(req["action"])}`)),
      h("tr", {}, h("th", {}, "Policy version"), h("td", {}, policy ? `${str(policy["version"])} (${str(policy["engine"])})` : "none")),
    ),
    h("h3", {}, "Request"), h("pre", {}, pretty(req)),
    h("h3", {}, "Derived context (history, approvals, shadow, caller)"), h("pre", {}, pretty(derived)),
  );
}

function verifyView(prefill = "", receiptId: string | null = null): void {
  const input = h("textarea", { id: "answer", placeholder: "Paste a saved decision answer (JSON) or a receipt (signed note), or drop a file here" }) as HTMLTextAreaElement;
  input.value = prefill;
  const out = h("div", { id: "verify-result" });
  const run = (): void => {
    const k = keys();
    if (!k) {
      out.replaceChildren(needKeys());
      return;
    }
    const { checks, receipt, response } = checkInput(input.value, k);
    const allOk = checks.every((c) => c.ok !== false);
    const claim = h("div", { class: "claim card", id: "claim" }, h("h3", {}, "The server's claim (not verified here)"), h("p", { class: "muted" }, "…"));
    out.replaceChildren(
      h("h2", { class: allOk ? "ok" : "bad", id: "verdict" }, allOk ? "✓ Verified in this browser" : "✗ Does not verify"),
      checkList(checks),
      ...(receipt ? [receiptSummary(receipt), claim] : []),
    );
    if (receipt) void serverClaim(claim, response ? canonicalJson(response) : receiptText(input.value));
  };
  input.addEventListener("dragover", (e) => e.preventDefault());
  input.addEventListener("drop", (e) => {
    e.preventDefault();
    void (e).dataTransfer?.files[0]?.text().then((t) => {
      input.value = t;
      run();
    });
  });
  show(h("h1", {}, "Verify a decision"), input, h("button", { id: "verify", click: run }, "Verify"), out);
  if (receiptId) {
    void apiJson(`/v1/receipts/${encodeURIComponent(receiptId)}`).then(
      (answer) => {
        input.value = pretty(answer);
        run();
      },
      (e: unknown) => out.replaceChildren(h("p", { class: "bad" }, `Could not load receipt ${receiptId}: ${message(e)}`)),
    );
  } else if (prefill) {
    run();
  }
}

/** The receipt in what was pasted: the answer's `receipt`, or the pasted note itself. */
function receiptText(input: string): string {
  try {
    const parsed = strictJson(input.trim());
    if (isObject(parsed) && typeof parsed["receipt"] === "string") return parsed["receipt"];
  } catch {
    // a bare receipt
  }
  return input.trim() + "\n";
}

/** The gate's replay of the receipt: shown as its claim, beside what the page verified. */
async function serverClaim(box: HTMLElement, body: string): Promise<void> {
  const text = box.querySelector("p") as HTMLElement;
  if (!token()) {
    text.textContent = "Sign in with a caller that may read to see the gate's replay of this decision.";
    return;
  }
  try {
    const r = await apiJson("/v1/replay", { method: "POST", body, headers: { "content-type": "application/json" } });
    box.replaceChildren(h("h3", {}, "The server's claim (not verified here): replay"), h("pre", {}, pretty(r)));
  } catch (e) {
    text.textContent = `The gate did not replay it: ${message(e)}`;
  }
}

// ---------------------------------------------------------------- reading the log

/** The latest checkpoint, verified with the pinned log key. */
async function checkpoint(k: Keys): Promise<{ text: string; size: bigint; root: Uint8Array; origin: string; note: string }> {
  const r = await api("/log/checkpoint");
  const note = await r.text();
  const text = k.witnesses ? k.witnesses.verifyCheckpoint(note) && noteSigners(note, [])[0] : verifyNote(note, k.log);
  const c = parseCheckpoint(text);
  if (c.origin !== k.log.name) throw new Error(`the checkpoint's origin ${c.origin} is not the pinned log ${k.log.name}`);
  return { text, size: c.size, root: c.root, origin: c.origin, note };
}

function tilePath(n: bigint): string {
  const groups: string[] = [];
  let x = n;
  do {
    groups.unshift((x % 1000n).toString().padStart(3, "0"));
    x /= 1000n;
  } while (x > 0n);
  return groups.map((g, i) => (i < groups.length - 1 ? "x" + g : g)).join("/");
}

/** The entries of entry bundle `n` of a log of `size` (C2SP tlog-tiles: big-endian uint16 lengths). */
async function bundle(n: bigint, size: bigint): Promise<Uint8Array[]> {
  const width = size - n * 256n >= 256n ? 256n : size - n * 256n;
  const path = `/log/tile/entries/${tilePath(n)}${width < 256n ? `.p/${width}` : ""}`;
  const r = await api(path);
  if (!r.ok) throw new Error(`${path}: ${r.status} ${(await r.text()).trim()}`);
  const bytes = new Uint8Array(await r.arrayBuffer());
  const out: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; ) {
    const len = ((bytes[at] ?? 0) << 8) | (bytes[at + 1] ?? 0);
    out.push(bytes.subarray(at + 2, at + 2 + len));
    at += 2 + len;
  }
  if (BigInt(out.length) !== width) throw new Error(`${path}: ${out.length} entries, expected ${width}`);
  return out;
}

/** Entry `index`, signed by the gate and proved in the log (both checked here). */
async function entry(index: bigint, k: Keys): Promise<{ text: string; proof: string; raw: Uint8Array }> {
  const cp = await checkpoint(k);
  const entries = await bundle(index / 256n, cp.size);
  const raw = entries[Number(index % 256n)] as Uint8Array;
  const text = verifyNote(raw, k.gate);
  const r = await api(`/v1/proofs/inclusion?index=${index}&size=${cp.size}`);
  const proof = await r.text();
  if (!r.ok) throw new Error(`inclusion proof: ${r.status} ${proof}`);
  verifyProofBundle(raw, proof, k.log);
  return { text, proof, raw };
}

// ---------------------------------------------------------------- approvals view

interface Vote {
  by: string;
  entry: number;
  at: string;
  note?: string;
}
interface Approval {
  id: string;
  request: JsonObject;
  requested_by: string;
  receipt_id: string;
  count: number;
  expires_at: string;
  /** UNIX nanoseconds: past 2^53, so read as a bigint. */
  expires_at_ns: number | bigint;
  approvals: Vote[];
  rejected?: Vote;
  state: string;
}

function countdown(el: HTMLElement, expiresNs: number | bigint): void {
  const expiresMs = Number(BigInt(expiresNs) / 1_000_000n);
  const tick = (): void => {
    const left = Math.round((expiresMs - Date.now()) / 1000);
    el.textContent = left > 0 ? `expires in ${Math.floor(left / 60)}m ${left % 60}s` : "expired";
  };
  tick();
  timers.push(window.setInterval(tick, 1000));
}

async function approvalsView(): Promise<void> {
  if (!(await whoami())) {
    show(h("h1", {}, "Approvals"), signIn(() => void approvalsView()));
    return;
  }
  const k = keys();
  const self = me as Me;
  let listed: Approval[];
  try {
    listed = ((await apiJson("/v1/approvals")) as unknown as { approvals: Approval[] }).approvals;
  } catch (e) {
    show(h("h1", {}, "Approvals"), h("p", { class: "bad" }, message(e)));
    return;
  }
  const open = listed.filter((a) => a.state === "open");
  const cards = open.map((a) => {
    const req = a.request;
    const target = isObject(req["target"]) ? req["target"] : {};
    const mine = a.requested_by === self.name;
    const note = h("input", { type: "text", class: "note", placeholder: "note (optional)" }) as HTMLInputElement;
    const result = h("div", { class: "vote-result" });
    const expires = h("span", { class: "expires" });
    countdown(expires, a.expires_at_ns);
    const vote = (how: "approve" | "reject") => async (): Promise<void> => {
      try {
        const answer = (await apiJson(`/v1/approvals/${encodeURIComponent(a.id)}`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ vote: how, ...(note.value ? { note: note.value } : {}) }),
        })) as unknown as Approval;
        const mineVote = how === "approve" ? answer.approvals.find((v) => v.by === self.name) : answer.rejected;
        if (!mineVote) throw new Error("the answer records no vote by you");
        result.replaceChildren(h("p", {}, `Recorded: ${how} at log index ${mineVote.entry}. Reading the signed entry…`));
        if (!k) {
          result.append(needKeys());
          return;
        }
        if (!self.roles.includes("read") && !self.roles.includes("admin")) {
          result.append(h("p", { class: "muted" }, "Reading the signed entry from the log needs the read role as well."));
          return;
        }
        const e = await entry(BigInt(mineVote.entry), k);
        result.replaceChildren(
          h("p", { class: "ok", id: "vote-entry" }, `✓ ${how === "approve" ? "Approved" : "Rejected"}: the governance entry at log index ${mineVote.entry}, signed by the gate and proved in the log (checked here):`),
          h("pre", {}, e.text),
        );
      } catch (err) {
        result.replaceChildren(h("p", { class: "bad" }, `✗ ${message(err)}`));
      }
    };
    return h("div", { class: "card approval", "data-id": a.id },
      h("h3", {}, `${str(req["surface"])} · ${str(req["action"])}${"amount" in target ? ` · ${canonicalJson(target["amount"])}` : ""}${"to" in target ? ` → ${canonicalJson(target["to"])}` : ""}`),
      h("p", {}, `Asked by ${a.requested_by} for ${canonicalJson(isObject(req["actor"]) ? req["actor"]["id"] : null)} · `, expires,
        ` · ${a.approvals.length} of ${a.count} approval(s) given, ${Math.max(0, a.count - a.approvals.length)} still needed`),
      h("pre", {}, pretty(req)),
      h("p", { class: "muted" }, `Request ${a.id} · opened by receipt `, h("a", { href: `/portal/receipts/${a.receipt_id}` }, a.receipt_id)),
      mine
        ? h("p", { class: "bad own" }, "You asked for this decision: you cannot vote on it (the gate refuses it too).")
        : h("div", {}, note, h("button", { class: "approve", click: () => void vote("approve")() }, "Approve"), h("button", { class: "reject", click: () => void vote("reject")() }, "Reject")),
      result,
    );
  });
  // A link to one request (`#/approvals/<id>`, as the webhook events carry).
  const focus = /^#\/approvals\/(ap-[0-9a-f]{32})$/.exec(location.hash)?.[1];
  const focused = focus ? cards.find((c) => c.getAttribute("data-id") === focus) : undefined;
  show(
    h("h1", {}, "Approvals"),
    h("p", {}, `${open.length} open request(s). `, h("button", { id: "refresh", click: () => void approvalsView() }, "Refresh")),
    focus && !focused ? h("p", { class: "muted", id: "not-open" }, `Request ${focus} is not open: approved, rejected, used or expired.`) : null,
    ...cards,
  );
  if (focused) {
    focused.classList.add("focused");
    focused.scrollIntoView();
  }
}

// ---------------------------------------------------------------- decisions view

interface Row {
  index: bigint;
  body: JsonObject;
  raw: Uint8Array;
}

function parseEntry(raw: Uint8Array): JsonObject | null {
  try {
    const [text] = noteSigners(raw, []);
    const body = strictJson(text);
    return isObject(body) ? body : null;
  } catch {
    return null;
  }
}

async function decisionsView(): Promise<void> {
  const k = keys();
  if (!k) return show(h("h1", {}, "Decisions"), needKeys());
  let cp;
  try {
    cp = await checkpoint(k);
  } catch (e) {
    return show(h("h1", {}, "Decisions"), h("p", { class: "bad" }, message(e)));
  }
  const rows: Row[] = [];
  let next = cp.size === 0n ? -1n : (cp.size - 1n) / 256n;
  const filters = Object.fromEntries(
    ["actor", "surface", "action"].map((f) => [f, h("input", { type: "text", id: `filter-${f}`, placeholder: f }) as HTMLInputElement]),
  );
  const decision = h("select", { id: "filter-decision" }, ...["", "PERMIT", "DENY", "SILENCE"].map((d) => h("option", { value: d }, d || "any decision"))) as HTMLSelectElement;
  const table = h("table", { id: "decisions" });
  const status = h("p", { class: "muted" });
  const render = (): void => {
    const want = (f: string, v: Json | undefined): boolean => !filters[f]?.value || str(v ?? "").includes(filters[f].value);
    const shown = rows.filter((r) => {
      const req = isObject(r.body["request"]) ? r.body["request"] : {};
      return (
        want("actor", isObject(req["actor"]) ? req["actor"]["id"] : null) &&
        want("surface", req["surface"]) &&
        want("action", req["action"]) &&
        (!decision.value || r.body["decision"] === decision.value)
      );
    });
    table.replaceChildren(
      h("tr", {}, ...["Index", "Decided at", "Actor", "Call", "Decision", "Reason", ""].map((t) => h("th", {}, t))),
      ...shown.map((r) => {
        const req = isObject(r.body["request"]) ? r.body["request"] : {};
        return h("tr", { class: "decision-row" },
          h("td", {}, r.index.toString()), h("td", {}, str(r.body["decided_at"])),
          h("td", {}, str(isObject(req["actor"]) ? req["actor"]["id"] : "")),
          h("td", {}, `${str(req["surface"])} · ${str(req["action"])}`),
          h("td", { class: `decision-${str(r.body["decision"])}` }, str(r.body["decision"])),
          h("td", { class: "muted" }, str(r.body["reason"])),
          h("td", {}, h("button", { click: () => void openInVerify(r, k) }, "Verify")));
      }),
    );
    status.textContent = `${rows.length} decision(s) read from the log (entries ${next < 0n ? 0 : (next + 1n) * 256n}…${cp.size - 1n}); ${shown.length} shown.`;
  };
  const older = async (): Promise<void> => {
    if (next < 0n) return;
    try {
      const entries = await bundle(next, cp.size);
      const base = next * 256n;
      const fresh: Row[] = [];
      entries.forEach((raw, i) => {
        const body = parseEntry(raw);
        if (body && body["format"] === "tollgate.receipt/v2") fresh.push({ index: base + BigInt(i), body, raw });
      });
      rows.push(...fresh.reverse());
      next -= 1n;
      render();
    } catch (e) {
      status.textContent = message(e);
    }
  };
  for (const f of [...Object.values(filters), decision]) f.addEventListener("input", render);
  show(
    h("h1", {}, "Decisions"),
    h("p", {}, `The latest decisions of ${cp.origin} (size ${cp.size}), read from the log's entry bundles. Open one to verify it here.`),
    h("div", {}, ...Object.values(filters), decision),
    status, table,
    h("button", { id: "older", click: () => void older() }, "Older"),
  );
  await older();
}

async function openInVerify(r: Row, k: Keys): Promise<void> {
  const cp = await checkpoint(k);
  const proof = await (await api(`/v1/proofs/inclusion?index=${r.index}&size=${cp.size}`)).text();
  const receipt = new TextDecoder().decode(r.raw);
  // pushState, not location.hash: a hashchange would draw an empty verify view over this one.
  history.pushState(null, "", "#/verify");
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.getAttribute("data-view") === "verify");
  verifyView(JSON.stringify({ receipt, proof }, null, 2));
}

// ---------------------------------------------------------------- log health view

interface Seen {
  origin: string;
  size: string;
  root: string;
  at: number;
  checkpoint: string;
}

async function logView(): Promise<void> {
  const k = keys();
  if (!k) return show(h("h1", {}, "Log health"), needKeys());
  const out: Child[] = [h("h1", {}, "Log health")];
  try {
    const cp = await checkpoint(k);
    const seen = JSON.parse(localStorage.getItem(SEEN) ?? "null") as Seen | null;
    const checks: Check[] = [{ name: `Checkpoint signed by the pinned log key${k.witnesses ? " and cosigned to the witness quorum" : ""}`, ok: true, detail: `size ${cp.size}` }];
    let firstSeen = Date.now();
    if (seen && seen.origin === cp.origin) {
      const old = BigInt(seen.size);
      const oldRoot = b64decode(seen.root, "root");
      attempt(checks, `Consistent with the checkpoint this browser saw last (size ${old})`, () => {
        if (old > cp.size) throw new Error(`the log shrank from ${old} to ${cp.size}: a rollback or a fork. Keep both checkpoints: ${seen.checkpoint} / ${cp.note}`);
        if (old === cp.size) {
          if (seen.root !== b64encode(cp.root)) throw new Error(`two roots for size ${old}: a fork. Keep both checkpoints.`);
          return "unchanged";
        }
        return "";
      });
      if (old < cp.size && old > 0n) {
        const r = await api(`/v1/proofs/consistency?old=${old}&new=${cp.size}`);
        const text = (await r.text()).trim();
        checks.pop();
        attempt(checks, `Consistent with the checkpoint this browser saw last (size ${old} → ${cp.size}, RFC 9162 proof checked here)`, () => {
          if (!r.ok) throw new Error(`no consistency proof: ${r.status} ${text}`);
          verifyConsistency(old, cp.size, oldRoot, cp.root, text ? text.split("\n").map((l) => b64decode(l, "proof hash")) : []);
        });
      }
      if (old === cp.size) firstSeen = seen.at;
    } else {
      checks.push({ name: "Consistency", ok: null, detail: "first checkpoint this browser has seen of this log" });
    }
    if (checks.every((c) => c.ok !== false)) {
      localStorage.setItem(SEEN, JSON.stringify({ origin: cp.origin, size: cp.size.toString(), root: b64encode(cp.root), at: firstSeen, checkpoint: cp.note } satisfies Seen));
    }
    out.push(
      h("div", { class: "card" },
        h("table", {},
          h("tr", {}, h("th", {}, "Origin"), h("td", {}, cp.origin)),
          h("tr", {}, h("th", {}, "Size"), h("td", { id: "log-size" }, cp.size.toString())),
          h("tr", {}, h("th", {}, "Root"), h("td", {}, b64encode(cp.root))),
          h("tr", {}, h("th", {}, "Age"), h("td", {}, `first seen by this browser ${Math.round((Date.now() - firstSeen) / 1000)} s ago`))),
        checkList(checks)),
      witnessTable(cp.note, k),
    );
    out.push(await governance(cp.size, k));
  } catch (e) {
    out.push(h("p", { class: "bad" }, message(e)));
  }
  show(...out);
}

/** The cosignatures on the checkpoint by the pinned policy's witnesses, and their age. */
function witnessTable(note: string, k: Keys): HTMLElement {
  if (!k.witnesses) return h("p", { class: "muted" }, "No witness policy pinned: cosignatures are not checked (Keys).");
  const lines = note.slice(note.lastIndexOf("\n\n") + 2).split("\n");
  const rows = [...k.witnesses.witnesses].map(([name, w]) => {
    const line = lines.find((l) => l.startsWith(`\u2014 ${w.name} `));
    let age = "no cosignature";
    if (line) {
      const sig = b64decode(line.split(" ")[2] ?? "", "cosignature");
      const t = new DataView(sig.buffer, sig.byteOffset + 4, 8).getBigUint64(0);
      age = `cosigned ${Math.round(Date.now() / 1000 - Number(t))} s ago`;
    }
    return h("tr", {}, h("td", {}, name), h("td", {}, fingerprint(w)), h("td", {}, age));
  });
  return h("div", { class: "card" }, h("h2", {}, "Witnesses"), h("table", {}, ...rows));
}

/** Governance entries (policy, callers, votes, redemptions) among the latest entries, and the policy they made active. */
async function governance(size: bigint, k: Keys): Promise<HTMLElement> {
  const card = h("div", { class: "card", id: "governance" }, h("h2", {}, "Governance"));
  if (!token()) {
    card.append(h("p", { class: "muted" }, "Sign in with a caller that may read to see the governance timeline (entry bundles need the read role)."));
    return card;
  }
  const TILES = 8n;
  const events: { index: bigint; body: JsonObject }[] = [];
  const last = size === 0n ? -1n : (size - 1n) / 256n;
  for (let n = last; n >= 0n && n > last - TILES; n--) {
    const entries = await bundle(n, size);
    entries.forEach((raw, i) => {
      const body = parseEntry(raw);
      if (body && body["format"] === "tollgate.governance/v1") {
        verifyNote(raw, k.gate);
        events.push({ index: n * 256n + BigInt(i), body });
      }
    });
  }
  events.sort((a, b) => (a.index < b.index ? 1 : -1));
  const active = events.find((e) => e.body["action"] === "policy.activate");
  const shadow = events.find((e) => e.body["action"] === "policy.shadow");
  const subject = (e: { body: JsonObject }): JsonObject => (isObject(e.body["subject"]) ? e.body["subject"] : {});
  card.append(
    h("p", {}, `Active policy: ${active ? str(subject(active)["version"]) : "not among the latest entries"}`,
      shadow ? ` · shadow: ${str(subject(shadow)["version"] ?? "none")}` : ""),
  );
  if (active) card.append(await policyFiles(str(subject(active)["version"])));
  card.append(await shadowCounts());
  card.append(
    h("p", { class: "muted" }, `Governance entries among the latest ${TILES * 256n} log entries (each gate-signed, checked here):`),
    h("table", { id: "timeline" },
      h("tr", {}, ...["Index", "At", "Action", "By", "Subject"].map((t) => h("th", {}, t))),
      ...events.map((e) => {
        const s = { ...subject(e) };
        delete s["token_sha256"];
        return h("tr", {}, h("td", {}, e.index.toString()), h("td", {}, str(e.body["at"])), h("td", {}, str(e.body["action"])),
          h("td", {}, str(e.body["by"])), h("td", { class: "muted" }, canonicalJson(s)));
      })),
  );
  return card;
}

/** The files of a published policy bundle (a .tar.gz), unpacked here. */
async function policyFiles(version: string): Promise<HTMLElement> {
  try {
    const r = await api(`/v1/policies/${encodeURIComponent(version)}`);
    if (!r.ok || !r.body) throw new Error(`${r.status}`);
    const bytes = new Uint8Array(await new Response(r.body.pipeThrough(new DecompressionStream("gzip"))).arrayBuffer());
    const files: HTMLElement[] = [];
    for (let at = 0; at + 512 <= bytes.length; ) {
      const head = bytes.subarray(at, at + 512);
      const name = new TextDecoder().decode(head.subarray(0, 100)).replace(/\0.*$/s, "");
      if (!name) break;
      const size = parseInt(new TextDecoder().decode(head.subarray(124, 136)).replace(/\0.*$/s, "").trim() || "0", 8);
      const type = String.fromCharCode(head[156] ?? 0);
      if (type === "0" || type === "\0") {
        files.push(h("details", {}, h("summary", {}, `${name} (${size} bytes)`), h("pre", {}, new TextDecoder().decode(bytes.subarray(at + 512, at + 512 + size)))));
      }
      at += 512 + Math.ceil(size / 512) * 512;
    }
    return h("div", { id: "policy-files" }, h("h3", {}, `Policy ${version}`), ...files);
  } catch (e) {
    return h("p", { class: "muted" }, `Policy files: ${message(e)}`);
  }
}

/** Shadow agreement counts, from the gate's /metrics (the server's numbers). */
async function shadowCounts(): Promise<HTMLElement> {
  try {
    const text = await (await api("/metrics")).text();
    const rows = [...text.matchAll(/^tollgate_shadow_decisions_total\{active="(\w+)",shadow="(\w+)"\} (\d+)/gm)].filter((m) => m[3] !== "0");
    const agree = rows.filter((m) => m[1] === m[2]).reduce((n, m) => n + Number(m[3]), 0);
    const all = rows.reduce((n, m) => n + Number(m[3]), 0);
    return h("p", { class: "claim" }, `Shadow evaluations (the server's counts): ${all}, of which ${agree} agree with the active policy.`,
      ...rows.filter((m) => m[1] !== m[2]).map((m) => ` ${m[1]}→${m[2]}: ${m[3]}.`));
  } catch {
    return h("p", { class: "muted" }, "Shadow counts: /metrics not readable.");
  }
}

// ---------------------------------------------------------------- routing

function route(): void {
  const view = location.hash.replace(/^#\/?/, "").split("/")[0] || "";
  const receipt = /^\/portal\/receipts\/([0-9a-f]{32})$/.exec(location.pathname);
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.getAttribute("data-view") === (view || "verify"));
  if (view === "approvals") void approvalsView();
  else if (view === "decisions") void decisionsView();
  else if (view === "log") void logView();
  else if (view === "keys") keysView();
  else verifyView("", receipt && !view ? (receipt[1]) : null);
}

window.addEventListener("hashchange", route);
void whoami().finally(() => {
  renderWho();
  route();
  document.body.setAttribute("data-ready", "true");
});
