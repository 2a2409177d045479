/**
 * C2SP tlog-policy: logs, witnesses, groups with thresholds, a quorum; a
 * checkpoint verifies when a listed log signed it and a quorum cosigned it.
 */

import { VerificationError } from "./base.js";
import {
  COSIGNATURE_V1,
  ED25519,
  type Checkpoint,
  Verifier,
  noteSigners,
  parseCheckpoint,
} from "./notes.js";

interface Group {
  readonly threshold: number;
  readonly members: readonly string[];
}

const SPACES = /\p{White_Space}+/u;

/**
 * A C2SP tlog-policy: trusted logs, witnesses, groups and the quorum of
 * cosignatures a checkpoint needs.
 */
export class Policy {
  readonly logs: Verifier[] = [];
  readonly witnesses = new Map<string, Verifier>();
  readonly groups = new Map<string, Group>();
  quorum: string | null = null;

  static parse(text: string): Policy {
    const p = new Policy();
    let quorumSeen = false;
    text.split("\n").forEach((raw, i) => {
      const bad = (why: string): VerificationError =>
        new VerificationError(`policy line ${i + 1}: ${why}`);
      for (let j = 0; j < raw.length; j++) {
        const c = raw.charCodeAt(j);
        if ((c < 0x20 && c !== 0x09) || c === 0x7f) throw bad("control character");
      }
      const words = raw.split(SPACES).filter((w) => w !== "");
      const [kw, ...args] = words;
      if (kw === undefined || kw.startsWith("#")) return;
      const defined = (name: string): boolean => p.witnesses.has(name) || p.groups.has(name);
      if (kw === "log" && args.length >= 1 && args.length <= 2) {
        const key = Verifier.parse(args[0] as string);
        if (key.kind !== ED25519 || p.logs.some((k) => sameKey(k, key))) {
          throw bad("a log key must be a new Ed25519 key");
        }
        p.logs.push(key);
      } else if (kw === "witness" && args.length >= 2 && args.length <= 3) {
        const name = args[0] as string;
        const key = Verifier.parse(args[1] as string);
        if (name === "none" || defined(name)) {
          throw bad(`name ${JSON.stringify(name)} is reserved or already defined`);
        }
        if (key.kind !== COSIGNATURE_V1 || [...p.witnesses.values()].some((w) => sameKey(w, key))) {
          throw bad("a witness key must be a new cosignature/v1 key");
        }
        p.witnesses.set(name, key);
      } else if (kw === "group" && args.length >= 3) {
        const [name = "", k = "", ...members] = args;
        if (name === "none" || defined(name)) {
          throw bad(`name ${JSON.stringify(name)} is reserved or already defined`);
        }
        for (const m of members) {
          if (!defined(m)) throw bad(`${JSON.stringify(m)} is not defined above`);
        }
        if (new Set(members).size !== members.length) throw bad("a member is listed twice");
        const n = members.length;
        let threshold: number;
        if (k === "all") threshold = n;
        else if (k === "any") threshold = 1;
        else if (/^[1-9][0-9]*$/.test(k) && Number(k) <= n) threshold = Number(k);
        else throw bad(`threshold ${JSON.stringify(k)} is not all, any or 1..${n}`);
        p.groups.set(name, { threshold, members });
      } else if (kw === "quorum" && args.length === 1) {
        if (quorumSeen) throw bad("a second quorum line");
        quorumSeen = true;
        const q = args[0] as string;
        if (q !== "none") {
          if (!defined(q)) throw bad(`${JSON.stringify(q)} is not defined above`);
          p.quorum = q;
        }
      } else if (["log", "witness", "group", "quorum"].includes(kw)) {
        throw bad(`wrong number of fields for ${kw}`);
      } else {
        throw bad(`unknown keyword ${JSON.stringify(kw)}`);
      }
    });
    if (!quorumSeen) throw new VerificationError("policy: no quorum line");
    return p;
  }

  /** Whether the policy lists `key` among its logs. */
  namesLog(key: Verifier): boolean {
    return this.logs.some((k) => k.equals(key));
  }

  private witnessed(member: string, cosigners: ReadonlySet<string>): boolean {
    if (this.witnesses.has(member)) return cosigners.has(member);
    const g = this.groups.get(member) as Group;
    return g.members.filter((m) => this.witnessed(m, cosigners)).length >= g.threshold;
  }

  /**
   * A checkpoint signed by a trusted log whose origin is its name, and
   * cosigned by witnesses that satisfy the quorum.
   */
  verifyCheckpoint(signed: string | Uint8Array): Checkpoint {
    const [text] = noteSigners(signed, []);
    const checkpoint = parseCheckpoint(text);
    const logs = this.logs.filter((k) => k.name === checkpoint.origin);
    if (logs.length === 0) {
      throw new VerificationError(`no trusted log has origin ${JSON.stringify(checkpoint.origin)}`);
    }
    const [, signers] = noteSigners(signed, logs);
    if (signers.length === 0) {
      throw new VerificationError(`no signature by the log ${checkpoint.origin}`);
    }
    const [, cosigners] = noteSigners(signed, [...this.witnesses.values()]);
    const names = new Set(
      [...this.witnesses].filter(([, w]) => cosigners.some((c) => c.equals(w))).map(([n]) => n),
    );
    if (this.quorum !== null && !this.witnessed(this.quorum, names)) {
      const listed = [...names].sort().join(", ");
      throw new VerificationError(
        `witness quorum not met: ${names.size} valid cosignature(s) (${listed})`,
      );
    }
    return checkpoint;
  }
}

function sameKey(a: Verifier, b: Verifier): boolean {
  return a.publicKey.length === b.publicKey.length && a.publicKey.every((x, i) => x === b.publicKey[i]);
}
