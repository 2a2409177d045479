// ESLint (flat config) for the SDK and its tests: the recommended and
// type-aware rules of typescript-eslint; `make lint` runs it beside
// `tsc --noEmit` and the browser-safety check of src/verify.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/", "build/", "node_modules/", "eslint.config.js"] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { project: ["./tsconfig.test.json"], tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      // node:test runs the promise `test()` returns itself.
      "@typescript-eslint/no-floating-promises": [
        "error",
        { allowForKnownSafeCalls: [{ from: "package", package: "node:test", name: ["test", "before", "after"] }] },
      ],
    },
  },
  {
    // Test doubles of fetch are async to match its signature.
    files: ["test/**"],
    rules: { "@typescript-eslint/require-await": "off" },
  },
);
