// Prints the page's side of the protocol contract as JSON: every plain-data export of
// src/protocol.ts (numbers, strings, and arrays, sets and objects of them) and the close codes
// src/connection.ts treats as final. tests/test_contracts.py compares them with
// docs/architecture.md and the server. Run from anywhere: node web/contract.mjs
import { build } from "esbuild";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const bundle = await build({
  stdin: {
    contents:
      'export * from "./src/protocol.ts";\nexport { FATAL_CLOSE_CODES } from "./src/connection.ts";\n',
    resolveDir: here,
    sourcefile: "contract.ts",
    loader: "ts",
  },
  bundle: true,
  write: false,
  platform: "node",
  format: "esm",
  target: "node20",
  logLevel: "warning",
});
const source = Buffer.from(bundle.outputFiles[0].text).toString("base64");
const contract = await import(`data:text/javascript;base64,${source}`);

const scalar = (v) => typeof v === "number" || typeof v === "string";
const plain = {};
for (const [name, value] of Object.entries(contract)) {
  if (scalar(value)) plain[name] = value;
  else if (value instanceof Set || Array.isArray(value)) {
    if ([...value].every(scalar)) plain[name] = [...value];
  } else if (value !== null && typeof value === "object" && Object.values(value).every(scalar)) {
    plain[name] = { ...value };
  }
}
process.stdout.write(`${JSON.stringify(plain)}\n`);
