// Build the npm package (tsc: dist/*.js and *.d.ts) and the no-build browser module the Python
// package serves at {mount}/wattfare.js (esbuild: one file, dist/wattfare.js).
//
//   node scripts/build.mjs                    both
//   node scripts/build.mjs --static           both, and copy the browser module to
//                                             wattfare_embed/static/ (committed, so pip users need no Node)
//   node scripts/build.mjs --browser-stdout   only the browser module, printed (the test that the
//                                             committed file is a fresh build compares against it)

import { execFileSync } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const BROWSER_MODULE = join(root, "..", "wattfare_embed", "static", "wattfare.js");

const BANNER = `// wattfare.js: the browser client of wattfare_embed (createWattfare, typed errors, <wattfare-connect>).
// Built from js/src by \`npm run build\` in the repository; do not edit by hand.`;

async function browserModule() {
  const result = await build({
    entryPoints: [join(root, "src", "browser.ts")],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    banner: { js: BANNER },
    legalComments: "none",
    charset: "utf8",
    write: false,
    logLevel: "warning",
  });
  return result.outputFiles[0].text;
}

if (process.argv.includes("--browser-stdout")) {
  process.stdout.write(await browserModule());
} else {
  rmSync(join(root, "dist"), { recursive: true, force: true });
  execFileSync(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", join(root, "tsconfig.build.json")], {
    stdio: "inherit",
  });
  const module = await browserModule();
  writeFileSync(join(root, "dist", "wattfare.js"), module);
  if (process.argv.includes("--static")) writeFileSync(BROWSER_MODULE, module);
}
