/**
 * The Vercel AI SDK (the real `ai` package, its mock model): a guarded
 * tool's `execute` runs only on a verified PERMIT from the real gate, once;
 * a refusal is the tool's answer to the model, naming decision and receipt.
 */

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { generateText, jsonSchema, stepCountIs, tool } from "ai";
import { MockLanguageModelV2 } from "ai/test";

import { guardTool } from "../src/ai.js";
import { Client, type Permit, Trust } from "../src/index.js";
import { type Gate, payment, startGate } from "./helpers.js";

let gate: Gate;
before(async () => {
  gate = await startGate();
});
after(async () => {
  await gate.stop();
});

/** A model that calls `pay` once with `amount`, then answers with text. */
function model(amount: number): MockLanguageModelV2 {
  let step = 0;
  const usage = { inputTokens: 1, outputTokens: 1, totalTokens: 2 };
  return new MockLanguageModelV2({
    doGenerate: async () => {
      step++;
      if (step === 1) {
        return {
          content: [{ type: "tool-call", toolCallId: "call-1", toolName: "pay", input: JSON.stringify({ amount }) }],
          finishReason: "tool-calls",
          usage,
          warnings: [],
        };
      }
      return { content: [{ type: "text", text: "done" }], finishReason: "stop", usage, warnings: [] };
    },
  });
}

test("a guarded tool runs once on PERMIT, and a DENY is its answer to the model", async () => {
  const client = new Client(gate.url, Trust.of(gate.logKey, gate.gateKey), { token: gate.token });
  const ran: { amount: number; permit: Permit }[] = [];
  const pay = tool({
    description: "Transfer money",
    inputSchema: jsonSchema<{ amount: number }>({
      type: "object",
      properties: { amount: { type: "integer" } },
      required: ["amount"],
    }),
    execute: async ({ amount }, options) => {
      ran.push({ amount, permit: (options as unknown as { permit: Permit }).permit });
      return { paid: amount };
    },
  });
  let n = 0;
  const guarded = guardTool(client, pay, ({ amount }: { amount: number }) => payment(amount, `ts-ai-${amount}-${n++}`));

  const permitted = await generateText({ model: model(500), prompt: "pay 500", tools: { pay: guarded }, stopWhen: stepCountIs(3) });
  const results = permitted.steps.flatMap((s) => s.toolResults);
  assert.deepEqual(results.map((r) => r.output), [{ paid: 500 }]);
  assert.equal(ran.length, 1);
  assert.equal(ran[0]!.permit.receipt.decision, "PERMIT");

  const denied = await generateText({ model: model(5_000_000), prompt: "pay a lot", tools: { pay: guarded }, stopWhen: stepCountIs(3) });
  const [refusal] = denied.steps.flatMap((s) => s.toolResults).map((r) => r.output as Record<string, unknown>);
  assert.equal(ran.length, 1, "the tool never ran on DENY");
  assert.equal(refusal?.["refused"], true);
  assert.equal(refusal?.["decision"], "DENY");
  assert.match(String(refusal?.["receipt_id"]), /^[0-9a-f]{32}$/);
  // The model saw the refusal as the tool's result.
  const prompt = JSON.stringify(denied.steps[1]?.request.body ?? denied.response.messages);
  assert.match(prompt, /DENY/);
});
