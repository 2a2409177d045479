/**
 * Tollgate for TypeScript agents and services.
 *
 * - `Client`: ask the gate, verify the answer, get a `Permit` or a
 *   `Refusal`; `guard` runs a tool only on a verified PERMIT.
 * - `@tollgate/sdk/verify`: independent verification of what the gate
 *   answers, written from the specifications (C2SP signed-note,
 *   tlog-checkpoint, tlog-proof, tlog-policy; RFC 9162 Merkle proofs; RFC
 *   8785 canonical JSON), running unchanged in browsers.
 * - `@tollgate/sdk/surface`: the tool's own service refuses a call without a
 *   fresh, unused PERMIT for exactly that call (`SurfaceVerifier`,
 *   `permitMiddleware` for Express).
 * - `@tollgate/sdk/ai`: `guardTool` for the Vercel AI SDK.
 * - `TollgateError`: the one root of every error the SDK throws on purpose.
 */

export {
  Client,
  type ClientOptions,
  Deny,
  type Intent,
  Invalid,
  Permit,
  Refusal,
  Silence,
  Trust,
  Unavailable,
  Unverified,
  outcome,
} from "./client.js";
export { TollgateError } from "./errors.js";
export * from "./verify/index.js";
