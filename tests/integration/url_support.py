"""Function URLs from the outside: the echo function, a URL's public permissions, and one HTTPS request to
a URL (host or path style, signed or not) with the server's CA and the URL's name for SNI."""
from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import uuid
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


ECHO = '''
import base64, json

def handler(event, context):
    mode = (event.get("queryStringParameters") or {}).get("mode")
    if mode == "raise":
        raise ValueError("boom")
    if mode == "string":
        return "Hello, world!"
    if mode == "plain":
        return {"message": "hi"}
    if mode == "custom":
        return {"statusCode": 201, "headers": {"Content-Type": "text/plain", "X-Custom": "yes"},
                "cookies": ["a=1; Max-Age=60", "b=2"], "body": "created"}
    if mode == "binary":
        return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
                "isBase64Encoded": True, "body": base64.b64encode(bytes(range(256))).decode()}
    return {"statusCode": 200, "headers": {"x-invoked-arn": context.invoked_function_arn},
            "body": json.dumps(event)}
'''


URL_RE = re.compile(r"https://(?P<id>[a-z0-9]{32})\.lambda-url\.(?P<region>[a-z0-9-]+)\.localhost:(?P<port>\d+)/")


PUBLIC = dict(StatementId="FunctionURLAllowPublicAccess", Action="lambda:InvokeFunctionUrl", Principal="*",
              FunctionUrlAuthType="NONE")


# AWS since October 2025: a URL invocation needs lambda:InvokeFunction too (the console adds both).
PUBLIC_INVOKE = dict(StatementId="FunctionURLInvokeAllowPublicAccess", Action="lambda:InvokeFunction", Principal="*",
                     InvokedViaFunctionUrl=True)


def make_public(lam, name: str, **kw) -> None:
    """What the console's "NONE" auth does: both statements of a public URL."""
    lam.add_permission(FunctionName=name, **PUBLIC, **kw)
    lam.add_permission(FunctionName=name, **PUBLIC_INVOKE, **kw)


class SniConnection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 with another name for SNI and certificate verification (*.localhost need
    not resolve on the test host)."""

    def __init__(self, port: int, server_name: str, context: ssl.SSLContext):
        super().__init__("127.0.0.1", port, context=context, timeout=120)
        self._server_name = server_name

    def connect(self):
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._server_name)


class Reply:
    def __init__(self, resp: http.client.HTTPResponse):
        self.status = resp.status
        self.header_list = [(k.lower(), v) for k, v in resp.getheaders()]
        self.body = resp.read()

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.header_list if k == name.lower()), None)

    def headers(self, name: str) -> list[str]:
        return [v for k, v in self.header_list if k == name.lower()]

    def json(self):
        return json.loads(self.body)


def call(srv, function_url: str, method: str = "GET", path: str = "/", *, query: str = "",
         headers: list[tuple[str, str]] | None = None, body: bytes = b"", key: dict | None = None,
         style: str = "host") -> Reply:
    """One request to a function URL; `key` ({AccessKeyId, SecretAccessKey}) signs it (SigV4, lambda)."""
    m = URL_RE.fullmatch(function_url)
    assert m, function_url
    port = int(m["port"])
    if style == "host":
        host, server_name, target = f"{m['id']}.lambda-url.{m['region']}.localhost:{port}", urlsplit(
            function_url).hostname, path
    else:
        host, server_name, target = f"127.0.0.1:{port}", "127.0.0.1", f"/lambda-url/{m['id']}{path}"
    target += f"?{query}" if query else ""
    pairs = [("Host", host)] + list(headers or [])
    if key is not None:
        req = AWSRequest(method=method, url=f"https://{host}{target}", data=body, headers=dict(pairs))
        SigV4Auth(Credentials(key["AccessKeyId"], key["SecretAccessKey"]), "lambda", m["region"]).add_auth(req)
        pairs = list(req.headers.items())
    conn = SniConnection(port, server_name, ssl.create_default_context(cafile=srv.ca))
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for k, v in pairs:
            conn.putheader(k, v)
        if body or method in ("POST", "PUT", "PATCH"):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        return Reply(conn.getresponse())
    finally:
        conn.close()


def assert_forbidden(reply: Reply) -> None:
    assert reply.status == 403, (reply.status, reply.body)
    assert reply.json() == {"Message": "Forbidden"}


def user_with_policy(iam, *statements: dict) -> dict:
    name = f"url-user-{uuid.uuid4().hex[:10]}"
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    if statements:
        iam.put_user_policy(UserName=name, PolicyName="p",
                            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": list(statements)}))
    return key
