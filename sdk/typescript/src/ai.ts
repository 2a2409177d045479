/**
 * The Vercel AI SDK (package `ai`): `guardTool` wraps a `tool({...})` so
 * its `execute` runs only on a verified PERMIT for the intent its input
 * names, once per call; a refusal becomes the tool's answer to the model
 * (a `ToolRefusal`, naming the decision and the receipt), so the model
 * learns the call did not happen and why, and nothing ran.
 *
 * No import of `ai` here: any tool object with `execute(input, options)`
 * can be guarded, and the package is not a dependency of the SDK.
 */

import { Deny, type Client, type Intent, type Permit, Refusal, Silence } from "./client.js";

/** What the model is told when the gate did not permit the call. */
export interface ToolRefusal {
  refused: true;
  /** DENY, or SILENCE (nothing permitted it, or something failed: fail closed). */
  decision: "DENY" | "SILENCE";
  /** The policy's reason, or why there is no usable answer. */
  reason: string;
  /** The verified receipt that records the decision; null if no answer verified. */
  receipt_id: string | null;
}

/** The refusal a tool answers with. */
export function toolRefusal(e: Refusal): ToolRefusal {
  if (e instanceof Deny || e instanceof Silence) {
    return {
      refused: true,
      decision: e instanceof Deny ? "DENY" : "SILENCE",
      reason: e.reason,
      receipt_id: e.receipt.receipt_id,
    };
  }
  return { refused: true, decision: "SILENCE", reason: e.message, receipt_id: null };
}

type Execute<I, O, Options> = (input: I, options: Options) => O | PromiseLike<O>;

/**
 * `tool` whose `execute` first asks `client` about `intentOf(input)` and
 * runs only on a verified PERMIT; its options then also carry `permit` (to
 * pass on to the tool's service: `headerValue(options.permit)`). Errors
 * that are not refusals (the tool's own) propagate as before.
 */
export function guardTool<I, O, Options, T extends { execute?: Execute<I, O, Options> }>(
  client: Client,
  tool: T & { execute?: Execute<I, O, Options> },
  intentOf: (input: I) => Intent,
): T & { execute: (input: I, options: Options) => Promise<O | ToolRefusal> } {
  const execute = tool.execute;
  if (execute === undefined) throw new TypeError("guardTool: the tool has no execute to guard");
  return {
    ...tool,
    execute: async (input: I, options: Options): Promise<O | ToolRefusal> => {
      let permit: Permit;
      try {
        permit = await client.decide(intentOf(input));
      } catch (e) {
        if (e instanceof Refusal) return toolRefusal(e);
        throw e;
      }
      return await execute(input, { ...options, permit });
    },
  };
}
