# Runs under the official, unmodified awslambdaric (shipped in the zip; see bootstrap).
def handler(event, context):
    print("ric handler says hi")
    if event.get("raise"):
        raise KeyError(event["raise"])
    return {"ok": event, "rid": context.aws_request_id, "fn": context.function_name}
