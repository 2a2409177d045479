/**
 * Verification of the gate's answers, written from the specifications, one
 * module per specification; it runs unchanged in Node (≥ 20) and in
 * browsers (no Node-only API: `tsconfig.verify.json` holds it to that):
 *
 * - `notes`: C2SP signed-note and tlog-checkpoint;
 * - `policy`: C2SP tlog-policy (witness quorums);
 * - `merkle`: RFC 9162 §2.1 hashes, inclusion and consistency;
 * - `proof`: C2SP tlog-proof;
 * - `jcs`: RFC 8785 canonical JSON, and strict JSON;
 * - `receipts`: Tollgate receipts, the request rules and `verifyDecision`,
 *   which checks a decision answer as `proofcheck receipt` does.
 */

export { VerificationError, b64decode, b64encode, hex, sha256 } from "./base.js";
export { type Json, type JsonObject, canonicalJson, isIntegerMember, isObject, jsonText, strictJson } from "./jcs.js";
export { leafHash, verifyConsistency, verifyInclusion } from "./merkle.js";
export {
  type Checkpoint,
  MAX_NOTE_SIZE,
  MAX_SIGNATURES,
  Verifier,
  noteSigners,
  parseCheckpoint,
  verifyNote,
} from "./notes.js";
export { Policy } from "./policy.js";
export { PROOF_HEADER, type ProofBundle, parseProofBundle, verifyProofBundle } from "./proof.js";
export {
  type Decision,
  MAX_SAFE_INTEGER,
  RECEIPT_FORMAT,
  type Receipt,
  type FieldStatus,
  approvalId,
  checkOpenings,
  checkRequest,
  commitment,
  committedFields,
  openRequest,
  receiptId,
  verifyDecision,
  verifyReceipt,
} from "./receipts.js";
