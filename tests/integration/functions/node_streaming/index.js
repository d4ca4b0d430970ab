// Response streaming as AWS's samples write it: awslambda.* are globals of the Node.js runtime.
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// InvokeWithResponseStream: writes, sleeps, writes (a failure after the first write, if asked).
exports.handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  responseStream.setContentType("text/plain");
  console.log("streaming for", context.awsRequestId);
  responseStream.write("first,");
  await sleep(event.sleepMs ?? 1000);
  if (event.fail) throw new Error(event.fail);
  if (event.bytes) {
    const block = Buffer.alloc(64 * 1024, 120);
    for (let n = 0; n < event.bytes; n += block.length) {
      if (!responseStream.write(block)) await new Promise((r) => responseStream.once("drain", r));
    }
  }
  responseStream.write("second");
  responseStream.end();
});

// A RESPONSE_STREAM function URL: status, headers and cookies first, then the body as it comes.
exports.url = awslambda.streamifyResponse(async (event, responseStream) => {
  const stream = awslambda.HttpResponseStream.from(responseStream, {
    statusCode: 201, headers: { "Content-Type": "text/plain", "X-Streamed": "yes" }, cookies: ["a=1"] });
  stream.write(`hello ${event.rawPath} `);
  await sleep(1000);
  stream.write("world");
  stream.end();
});

// Failures around a stream: a crash after the first write, a timeout, an error before any byte.
exports.trouble = awslambda.streamifyResponse(async (event, responseStream) => {
  if (event.early || (event.queryStringParameters || {}).early) throw new TypeError("nothing written");
  responseStream.write("partial");
  await sleep(200);
  if (event.crash) process.exit(3);
  await sleep(event.sleepMs ?? 0);
  responseStream.end("done");
});
