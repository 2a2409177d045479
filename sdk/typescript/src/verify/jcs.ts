/**
 * RFC 8785 canonical JSON (ECMAScript number formatting), and the strict
 * JSON every answer is read with: a member named twice, `NaN`, a number
 * beyond a double's range or a byte-order mark is refused. Integers beyond
 * 2^53 - 1 are read as `bigint`, so no digit is lost and the canonical form
 * of what was signed is reproduced exactly.
 */

import { VerificationError, asText } from "./base.js";

/** A JSON value as `strictJson` reads it. */
export type Json = null | boolean | number | bigint | string | Json[] | JsonObject;
export interface JsonObject {
  [member: string]: Json;
}

const FLOATS = Symbol("tollgate.json.floats");

/**
 * Whether member `key` of an object `strictJson` read was written as an
 * integer (no fraction, no exponent): `3` is, `3.0` and `3e0` are not, as
 * a typed parse of an unsigned field (the Rust verifier's) tells them apart.
 */
export function isIntegerMember(object: object, key: string): boolean {
  const value = (object as Record<string, unknown>)[key];
  const floats = (object as { [FLOATS]?: Set<string> })[FLOATS];
  if (floats?.has(key)) return false;
  return typeof value === "bigint" || (typeof value === "number" && Number.isInteger(value));
}

export function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function string(s: string): string {
  // JSON.stringify of a string is RFC 8785's string form: `"` and `\`
  // escaped, \b \t \n \f \r, other control characters as \u00xx.
  return JSON.stringify(s);
}

/** RFC 8785 (JCS): members sorted by their UTF-16 code units, no whitespace. */
export function canonicalJson(value: unknown): string {
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "number":
      if (!Number.isFinite(value)) throw new VerificationError("JSON numbers are finite");
      // ECMAScript Number::toString is RFC 8785's number form (-0 is "0").
      return String(value);
    case "bigint":
      return value.toString();
    case "string":
      return string(value);
    case "object": {
      if (value === null) return "null";
      if (Array.isArray(value)) return "[" + value.map(canonicalJson).join(",") + "]";
      const o = value as Record<string, unknown>;
      const keys = Object.keys(o).sort();
      return "{" + keys.map((k) => string(k) + ":" + canonicalJson(o[k])).join(",") + "}";
    }
    default:
      throw new VerificationError(`not JSON: ${typeof value}`);
  }
}

/**
 * `value` as compact JSON text, members in their order (not canonical):
 * how a decision answer is carried on (the `tollgate-permit` header).
 */
export function jsonText(value: unknown): string {
  switch (typeof value) {
    case "bigint":
      return value.toString();
    case "object": {
      if (value === null) return "null";
      if (Array.isArray(value)) return "[" + value.map(jsonText).join(",") + "]";
      const o = value as Record<string, unknown>;
      // Members whose value is undefined are left out, as JSON.stringify does.
      const keys = Object.keys(o).filter((k) => o[k] !== undefined);
      return "{" + keys.map((k) => string(k) + ":" + jsonText(o[k])).join(",") + "}";
    }
    default:
      return canonicalJson(value);
  }
}

const MAX_DEPTH = 128;

/** A recursive-descent reader of RFC 8259 JSON, strict as the gate is. */
class Reader {
  at = 0;
  constructor(readonly s: string) {}

  fail(why: string): never {
    throw new VerificationError(`not JSON: ${why} at offset ${this.at}`);
  }

  space(): void {
    for (;;) {
      const c = this.s.charCodeAt(this.at);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) this.at++;
      else return;
    }
  }

  value(depth: number): Json {
    this.space();
    const c = this.s[this.at];
    if (c === "{") return this.object(depth + 1);
    if (c === "[") return this.array(depth + 1);
    if (c === '"') return this.string();
    if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) return this.number().value;
    for (const [word, v] of [["true", true], ["false", false], ["null", null]] as const) {
      if (this.s.startsWith(word, this.at)) {
        this.at += word.length;
        return v;
      }
    }
    return this.fail(c === undefined ? "unexpected end" : `unexpected ${JSON.stringify(c)}`);
  }

  object(depth: number): JsonObject {
    if (depth > MAX_DEPTH) this.fail(`nested deeper than ${MAX_DEPTH}`);
    this.at++;
    const out: JsonObject = {};
    const seen = new Set<string>();
    let floats: Set<string> | undefined;
    this.space();
    if (this.s[this.at] === "}") {
      this.at++;
      return out;
    }
    for (;;) {
      this.space();
      if (this.s[this.at] !== '"') this.fail("expected a member name");
      const key = this.string();
      if (seen.has(key)) throw new VerificationError(`duplicate member ${JSON.stringify(key)}`);
      seen.add(key);
      this.space();
      if (this.s[this.at] !== ":") this.fail("expected ':'");
      this.at++;
      this.space();
      let value: Json;
      const c = this.s[this.at];
      if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) {
        const n = this.number();
        value = n.value;
        if (n.float) (floats ??= new Set()).add(key);
      } else {
        value = this.value(depth);
      }
      // defineProperty, so a member named __proto__ is a member like any other.
      Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
      this.space();
      const next = this.s[this.at++];
      if (next === "}") break;
      if (next !== ",") this.fail("expected ',' or '}'");
    }
    if (floats) Object.defineProperty(out, FLOATS, { value: floats, enumerable: false });
    return out;
  }

  array(depth: number): Json[] {
    if (depth > MAX_DEPTH) this.fail(`nested deeper than ${MAX_DEPTH}`);
    this.at++;
    const out: Json[] = [];
    this.space();
    if (this.s[this.at] === "]") {
      this.at++;
      return out;
    }
    for (;;) {
      out.push(this.value(depth));
      this.space();
      const next = this.s[this.at++];
      if (next === "]") return out;
      if (next !== ",") this.fail("expected ',' or ']'");
    }
  }

  string(): string {
    this.at++;
    let out = "";
    let start = this.at;
    for (;;) {
      const c = this.s.charCodeAt(this.at);
      if (Number.isNaN(c)) this.fail("unterminated string");
      if (c === 0x22) {
        out += this.s.slice(start, this.at++);
        return out;
      }
      if (c < 0x20) this.fail("a control character in a string");
      if (c === 0x5c) {
        out += this.s.slice(start, this.at);
        out += this.escape();
        start = this.at;
        continue;
      }
      if (c >= 0xd800 && c <= 0xdfff) {
        const pair = c <= 0xdbff && this.isLow(this.s.charCodeAt(this.at + 1));
        if (!pair) this.fail("a lone surrogate");
        this.at++;
      }
      this.at++;
    }
  }

  isLow(c: number): boolean {
    return c >= 0xdc00 && c <= 0xdfff;
  }

  hex4(): number {
    const h = this.s.slice(this.at, this.at + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(h)) this.fail("a malformed \\u escape");
    this.at += 4;
    return parseInt(h, 16);
  }

  escape(): string {
    this.at++;
    const e = this.s[this.at++];
    const simple: Record<string, string> = {
      '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t",
    };
    if (e !== undefined && e in simple) return simple[e] as string;
    if (e !== "u") this.fail("a malformed escape");
    const u = this.hex4();
    if (u >= 0xdc00 && u <= 0xdfff) this.fail("a lone surrogate");
    if (u >= 0xd800 && u <= 0xdbff) {
      if (this.s.slice(this.at, this.at + 2) !== "\\u") this.fail("a lone surrogate");
      this.at += 2;
      const low = this.hex4();
      if (!this.isLow(low)) this.fail("a lone surrogate");
      return String.fromCharCode(u, low);
    }
    return String.fromCharCode(u);
  }

  number(): { value: number | bigint; float: boolean } {
    const m = /^-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(this.s.slice(this.at));
    if (!m) this.fail("a malformed number");
    const lexeme = m[0];
    this.at += lexeme.length;
    const float = m[1] !== undefined || m[2] !== undefined;
    if (!float) {
      const n = Number(lexeme);
      return { value: Number.isSafeInteger(n) ? n : BigInt(lexeme), float };
    }
    const n = Number(lexeme);
    if (!Number.isFinite(n)) throw new VerificationError(`the number ${lexeme} is out of range`);
    return { value: n, float };
  }
}

/**
 * `input` parsed as strict JSON (RFC 8259), as the gate parses: a duplicate
 * member name (which two parsers may read differently), `NaN`, `Infinity`,
 * numbers beyond a double's range, a byte-order mark and text that is not
 * UTF-8 are refused with a `VerificationError`.
 */
export function strictJson(input: string | Uint8Array): Json {
  if (typeof input !== "string" && input[0] === 0xef && input[1] === 0xbb && input[2] === 0xbf) {
    throw new VerificationError("not JSON: a byte-order mark");
  }
  const s = asText(input, "JSON");
  if (s.startsWith("\ufeff")) throw new VerificationError("not JSON: a byte-order mark");
  const r = new Reader(s);
  const value = r.value(0);
  r.space();
  if (r.at !== s.length) r.fail("trailing text");
  return value;
}
