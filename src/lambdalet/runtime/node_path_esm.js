// Preloaded (node --require) before lambdalet's Node bootstrap: ES module imports fall back to the
// node_modules directories on NODE_PATH, as AWS's nodejs18.x+ runtimes do ("searches the folders listed
// in NODE_PATH when loading ES modules"), so `import ... from "@aws-sdk/client-sqs"` finds the SDK in
// /var/runtime/node_modules and a layer's /opt/nodejs/node_modules. Node itself reads NODE_PATH for
// require only. Node's own resolution runs first: a function's own node_modules always wins.
// Stand-alone (node built-ins only). Needs module.registerHooks (Node >= 22.15); without it, nothing
// changes (require still reads NODE_PATH).
"use strict";
const fs = require("fs");
const path = require("path");
const { pathToFileURL } = require("url");
const Module = require("module");

const MODULE_DIRS = (process.env.NODE_PATH || "").split(path.delimiter)
  .filter((d) => path.isAbsolute(d) && path.basename(d) === "node_modules");

// "@scope/name/sub" -> "@scope/name"; null for relative, absolute, URL and built-in specifiers.
function packageName(specifier) {
  if (/^[./]/.test(specifier) || /^[a-z][a-z0-9+.-]*:/i.test(specifier) || Module.isBuiltin(specifier)) return null;
  const parts = specifier.split("/");
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
}

function resolve(specifier, context, nextResolve) {
  try {
    return nextResolve(specifier, context);
  } catch (err) {
    const esm = !(context.conditions || []).includes("require");     // require already searched NODE_PATH
    const name = err && err.code === "ERR_MODULE_NOT_FOUND" && esm ? packageName(specifier) : null;
    if (!name) throw err;
    for (const dir of MODULE_DIRS) {
      if (!fs.existsSync(path.join(dir, name))) continue;
      // Resolved as if imported from a module beside `dir`: Node's own rules (exports, conditions) apply.
      return nextResolve(specifier, { ...context, parentURL: pathToFileURL(path.join(path.dirname(dir), "/")).href });
    }
    throw err;
  }
}

if (MODULE_DIRS.length && typeof Module.registerHooks === "function") {
  Module.registerHooks({ resolve });
}
