// Parse an AsyncAPI document with the official parser (@asyncapi/parser); print its diagnostics
// as JSON lines ({severity, code, message, path}) and exit 1 when any is an error.
// usage: node asyncapi_parse.mjs <document>   (NODE_PATH: the node_modules holding @asyncapi/parser)
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(process.env.HIVE_NODE_MODULES + "/");
const { Parser } = require("@asyncapi/parser");

const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(process.argv[2], "utf8"));
let errors = 0;
for (const d of diagnostics) {
  if (d.severity === 0) errors++;
  console.log(JSON.stringify({ severity: d.severity, code: d.code, message: d.message, path: d.path.join(".") }));
}
if (document) {
  console.log(JSON.stringify({ channels: document.channels().length, operations: document.operations().length,
                               messages: document.components().messages().length }));
}
process.exit(errors || !document ? 1 : 0);
