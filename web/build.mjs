// Bundles the terminal page (src/main.ts) and the recordings page (src/recordings.ts), each with
// its CSS, into ../app/static/dist/, or with --tests the unit tests into node_modules/.cache/
// (outside the sources, so hack/setup's build stamp ignores them).
import { build } from "esbuild";
import { readdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const args = new Set(process.argv.slice(2));

if (args.has("--tests")) {
  const outdir = join(here, "node_modules/.cache/ec2-terminal-tests");
  rmSync(outdir, { recursive: true, force: true });
  const tests = readdirSync(join(here, "test"))
    .filter((f) => f.endsWith(".test.ts"))
    .map((f) => join(here, "test", f));
  await build({
    entryPoints: tests,
    outdir,
    outExtension: { ".js": ".mjs" },
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    sourcemap: "inline",
    logLevel: "warning",
  });
} else {
  const outdir = join(here, "../app/static/dist");
  rmSync(outdir, { recursive: true, force: true });
  await build({
    entryPoints: { terminal: join(here, "src/main.ts"), recordings: join(here, "src/recordings.ts") },
    outdir,
    bundle: true,
    format: "iife",
    platform: "browser",
    target: ["chrome110", "firefox115", "safari16"],
    minify: !args.has("--dev"),
    sourcemap: args.has("--dev") ? "linked" : false,
    legalComments: "eof",
    logLevel: "warning",
  });
}
