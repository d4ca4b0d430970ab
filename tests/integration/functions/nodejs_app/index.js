// Sample Node.js (nodejs22.x) function for tests/integration/test_invoke.py
exports.handler = async (event, context) => {
  console.log("node saw", JSON.stringify(event));
  if (event.raise) throw new TypeError(event.raise);
  return { runtime: process.version, event, functionName: context.functionName,
           requestId: context.awsRequestId, remaining: context.getRemainingTimeInMillis(),
           greeting: process.env.GREETING };
};
