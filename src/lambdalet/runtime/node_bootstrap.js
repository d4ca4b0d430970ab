// lambdalet's Node.js runtime client: GET /next -> handler(event, context[, callback]) -> POST result.
// Stand-alone (node built-ins only). Errors are shaped as AWS's Node runtime shapes them.
"use strict";
const http = require("http");
const path = require("path");
const fs = require("fs");
const { pathToFileURL } = require("url");

const [HOST, PORT] = process.env.AWS_LAMBDA_RUNTIME_API.split(":");
const API = "/2018-06-01/runtime";
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const TASK_ROOT = process.env.LAMBDA_TASK_ROOT || "/var/task";

function request(method, p, body, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: HOST, port: PORT, path: API + p, method, agent,
      headers: Object.assign({ "Content-Length": body ? Buffer.byteLength(body) : 0 }, headers || {}) }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on("error", reject);
    if (body) req.write(body);
    req.end();
  });
}

function errorDoc(err, type) {
  if (!(err instanceof Error)) err = new Error(typeof err === "string" ? err : JSON.stringify(err));
  return { errorType: type || err.name || "Error", errorMessage: err.message,
    trace: String(err.stack || "").split("\n") };
}

// console.* as AWS's Node runtime writes it: "TIME\tREQUEST_ID\tLEVEL\tmessage" lines, or with
// LoggingConfig LogFormat=JSON (AWS_LAMBDA_LOG_FORMAT) one JSON record per call, calls below
// AWS_LAMBDA_LOG_LEVEL dropped.
const util = require("util");
const JSON_LOGS = (process.env.AWS_LAMBDA_LOG_FORMAT || "").toUpperCase() === "JSON";
const LEVELS = { TRACE: 0, DEBUG: 1, INFO: 2, WARN: 3, ERROR: 4, FATAL: 5 };
const MIN_LEVEL = JSON_LOGS ? (LEVELS[(process.env.AWS_LAMBDA_LOG_LEVEL || "").toUpperCase()] ?? LEVELS.INFO) : 0;
let currentRequestId;

function jsonRecord(level, args) {
  const rec = { timestamp: new Date().toISOString(), level, requestId: currentRequestId };
  const err = args.find((a) => a instanceof Error);
  rec.message = util.format(...args);
  if (err) Object.assign(rec, { errorType: err.name, errorMessage: err.message, stackTrace: String(err.stack || "").split("\n") });
  return JSON.stringify(rec);
}

function patchConsole() {
  const write = (line) => process.stdout.write(line + "\n");
  const methods = { log: "INFO", info: "INFO", warn: "WARN", error: "ERROR", debug: "DEBUG", trace: "TRACE" };
  for (const [name, level] of Object.entries(methods)) {
    if (LEVELS[level] < MIN_LEVEL) { console[name] = () => {}; continue; }
    console[name] = JSON_LOGS
      ? (...args) => write(jsonRecord(level, args))
      : (...args) => write(`${new Date().toISOString()}\t${currentRequestId}\t${level}\t${util.format(...args).replace(/\n/g, "\r")}`);
  }
}
patchConsole();

function logError(rid, doc, prefix) {
  if (JSON_LOGS) {
    process.stdout.write(JSON.stringify({ timestamp: new Date().toISOString(), level: "ERROR", requestId: rid,
      errorType: doc.errorType, errorMessage: doc.errorMessage, stackTrace: doc.trace }) + "\n");
  } else {
    process.stdout.write(`${new Date().toISOString()}\t${rid}\tERROR\t${prefix}${JSON.stringify(doc)}\n`);
  }
}

// Response streaming as AWS's Node runtime exposes it, as globals: awslambda.streamifyResponse(handler)
// marks a handler (event, responseStream, context); awslambda.HttpResponseStream.from(stream, metadata)
// writes a function URL's status/headers/cookies prelude (JSON, then 8 NUL bytes). The stream is the
// body of a chunked POST /response with Lambda-Runtime-Function-Response-Mode: streaming; an error
// ends it with the Lambda-Runtime-Function-Error-Type / -Body trailers (the body base64-encoded).
const { Writable } = require("stream");
const HANDLER_STREAMING = Symbol.for("aws.lambda.runtime.handler.streaming");
const HANDLER_HIGHWATERMARK = Symbol.for("aws.lambda.runtime.handler.streaming.highWaterMark");
const HTTP_INTEGRATION = "application/vnd.awslambda.http-integration-response";

class ResponseStream extends Writable {
  constructor(rid, highWaterMark) {
    super(highWaterMark ? { highWaterMark } : {});
    this._rid = rid; this._contentType = "application/octet-stream"; this._req = null; this._errorDoc = null;
    this.finished = new Promise((resolve, reject) => { this._resolve = resolve; this._reject = reject; });
  }
  setContentType(type) { if (!this._req) this._contentType = String(type); }
  _open() {
    if (this._req) return this._req;
    this._req = http.request({ host: HOST, port: PORT, path: `${API}/invocation/${this._rid}/response`, method: "POST", agent,
      headers: { "Lambda-Runtime-Function-Response-Mode": "streaming", "Transfer-Encoding": "chunked",
        "Content-Type": this._contentType,
        Trailer: "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body" } }, (res) => {
      res.resume(); res.on("end", () => this._resolve());
    });
    this._req.on("error", (e) => this._reject(e));
    return this._req;
  }
  _write(chunk, encoding, cb) { this._open().write(chunk, cb); }     // cb once taken: back-pressure
  _final(cb) {
    const req = this._open();
    if (this._errorDoc) req.addTrailers({ "Lambda-Runtime-Function-Error-Type": this._errorDoc.errorType,
      "Lambda-Runtime-Function-Error-Body": Buffer.from(JSON.stringify(this._errorDoc)).toString("base64") });
    req.end(cb);
  }
  fail(doc) { this._errorDoc = doc; if (!this.writableEnded) this.end(); return this.finished; }
}

globalThis.awslambda = {
  streamifyResponse(handler, options) {
    handler[HANDLER_STREAMING] = "response";
    if (options && Number.isInteger(options.highWaterMark)) handler[HANDLER_HIGHWATERMARK] = options.highWaterMark;
    return handler;
  },
  HttpResponseStream: {
    from(stream, prelude) {
      stream.setContentType(HTTP_INTEGRATION);
      stream.write(JSON.stringify(prelude || {}));
      stream.write(Buffer.alloc(8));           // the delimiter between the prelude and the body
      return stream;
    },
  },
};

async function invokeStreaming(fn, event, ctx, rid) {
  const stream = new ResponseStream(rid, fn[HANDLER_HIGHWATERMARK]);
  try {
    await fn(event, stream, ctx);
    if (!stream.writableEnded) stream.end();
    await stream.finished;
  } catch (e) {
    const doc = errorDoc(e);
    logError(rid, doc, "Invoke Error \t");
    await stream.fail(doc);
  }
}

class Fault extends Error { constructor(type, msg) { super(msg); this.faultType = type; } }

async function loadHandler(handlerString) {
  const dot = handlerString.lastIndexOf(".");
  if (dot < 1) throw new Fault("Runtime.MalformedHandlerName", `Bad handler ${handlerString}`);
  const modPath = handlerString.slice(0, dot), fnName = handlerString.slice(dot + 1);
  const base = path.resolve(TASK_ROOT, modPath);
  let mod;
  const found = [".js", ".mjs", ".cjs"].map((e) => base + e).find((f) => fs.existsSync(f));
  try {
    if (!found) throw Object.assign(new Error(`Cannot find module '${modPath}'`), { code: "MODULE_NOT_FOUND" });
    mod = found.endsWith(".mjs") ? await import(pathToFileURL(found).href) : require(found);
  } catch (e) {
    if (e.code === "MODULE_NOT_FOUND" || e.code === "ERR_MODULE_NOT_FOUND")
      throw new Fault("Runtime.ImportModuleError", `Error: ${e.message}`);
    if (e instanceof SyntaxError) throw new Fault("Runtime.UserCodeSyntaxError", `${e.name}: ${e.message}`);
    throw e;
  }
  const fn = mod[fnName] || (mod.default && mod.default[fnName]);
  if (typeof fn !== "function") throw new Fault("Runtime.HandlerNotFound", `${handlerString} is undefined or not exported`);
  return fn;
}

function makeContext(h) {
  const deadline = Number(h["lambda-runtime-deadline-ms"] || 0);
  const env = process.env;
  let clientContext;
  if (h["lambda-runtime-client-context"]) { try { clientContext = JSON.parse(h["lambda-runtime-client-context"]); } catch (e) {} }
  return { awsRequestId: h["lambda-runtime-aws-request-id"], invokedFunctionArn: h["lambda-runtime-invoked-function-arn"],
    functionName: env.AWS_LAMBDA_FUNCTION_NAME, functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE, logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME, clientContext, identity: undefined,
    tenantId: h["lambda-runtime-aws-tenant-id"],   // PER_TENANT functions only
    callbackWaitsForEmptyEventLoop: true, getRemainingTimeInMillis: () => Math.max(deadline - Date.now(), 0) };
}

function invokeHandler(fn, event, ctx) {
  return new Promise((resolve, reject) => {
    let done = false;
    const cb = (err, res) => { if (done) return; done = true; err ? reject(err) : resolve(res); };
    try {
      const r = fn(event, ctx, cb);
      if (r && typeof r.then === "function") r.then((v) => cb(null, v), (e) => cb(e || new Error("rejected")));
      else if (fn.length < 3) cb(null, r);
    } catch (e) { cb(e); }
  });
}

(async () => {
  let fn;
  try { fn = await loadHandler(process.env._HANDLER || ""); } catch (e) {
    const doc = errorDoc(e, e.faultType);
    logError(undefined, doc, "");
    await request("POST", "/init/error", JSON.stringify(doc), { "Lambda-Runtime-Function-Error-Type": doc.errorType });
    process.exit(1);
  }
  for (;;) {
    const next = await request("GET", "/invocation/next");
    const ctx = makeContext(next.headers);
    const rid = ctx.awsRequestId;
    currentRequestId = rid;
    if (next.headers["lambda-runtime-trace-id"]) process.env._X_AMZN_TRACE_ID = next.headers["lambda-runtime-trace-id"];
    if (fn[HANDLER_STREAMING] === "response") {
      await invokeStreaming(fn, next.body.length ? JSON.parse(next.body.toString()) : null, ctx, rid);
      continue;
    }
    try {
      const event = next.body.length ? JSON.parse(next.body.toString()) : null;
      const result = await invokeHandler(fn, event, ctx);
      const out = result === undefined ? "null" : JSON.stringify(result);
      await request("POST", `/invocation/${rid}/response`, out);
    } catch (e) {
      const doc = errorDoc(e);
      logError(rid, doc, "Invoke Error \t");
      await request("POST", `/invocation/${rid}/error`, JSON.stringify(doc), { "Lambda-Runtime-Function-Error-Type": "Unhandled" });
    }
  }
})();
