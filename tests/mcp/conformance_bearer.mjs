// Preloaded into the MCP conformance suite's Node process (`node --import`)
// by test_conformance.py: every request to the gateway's origin carries the
// caller's bearer token, as an MCP client configured with a Tollgate caller
// token sends it (the suite's client sends none of its own). The suite's MCP
// client and its raw checks use the global fetch and undici's `request`,
// which both dispatch through undici's global dispatcher; this wraps it.
import { createRequire } from "node:module";

const origin = new URL(process.env.TOLLGATE_CONFORMANCE_URL).origin;
const authorization = `Bearer ${process.env.TOLLGATE_CONFORMANCE_TOKEN}`;
// The suite's own undici (its dependency), so the dispatcher it reads is this one.
const require = createRequire(process.env.TOLLGATE_CONFORMANCE_PACKAGE);
const { getGlobalDispatcher, setGlobalDispatcher } = require("undici");

setGlobalDispatcher(
  getGlobalDispatcher().compose((dispatch) => (opts, handler) => {
    if (opts.origin !== undefined && new URL(String(opts.origin)).origin === origin) {
      const headers = opts.headers ?? {};
      opts = {
        ...opts,
        headers: Array.isArray(headers)
          ? [...headers, "authorization", authorization]
          : { ...headers, authorization },
      };
    }
    return dispatch(opts, handler);
  }),
);
