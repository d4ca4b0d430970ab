"""Calls lambdalet's API from inside its environment with its execution role's credentials."""
import json
import os
import re

import sigv4_client


def _result(status, headers, body):
    text = body.decode("utf-8", "replace")
    out = {"status": status, "error_type": headers.get("x-amzn-errortype", "").split(":")[0], "body": text[:4000]}
    if not out["error_type"] and status >= 400:
        m = re.search(r"<Code>([^<]+)</Code>", text)
        out["error_type"] = m.group(1) if m else ""
    return out


def handler(event, context):
    action = event.get("action")
    if action == "env":
        names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL")
        return {k: os.environ.get(k) for k in names}
    if action == "invoke":
        return _result(*sigv4_client.invoke(event["target"], event.get("payload") or {"from": "role_caller"}))
    if action == "whoami":
        return _result(*sigv4_client.query_api("sts", "GetCallerIdentity", "2011-06-15"))
    if action == "list_functions":
        return _result(*sigv4_client.request("lambda", "GET", "/2015-03-31/functions/"))
    if action == "list_roles":
        return _result(*sigv4_client.query_api("iam", "ListRoles", "2010-05-08"))
    if action == "create_user":
        return _result(*sigv4_client.query_api("iam", "CreateUser", "2010-05-08", {"UserName": event["name"]}))
    if action == "raw":
        return _result(*sigv4_client.request(event["service"], event["method"], event["path"]))
    if action == "unsigned":
        import http.client
        import urllib.parse
        ep = urllib.parse.urlsplit(os.environ["AWS_ENDPOINT_URL"])
        conn = http.client.HTTPConnection(ep.hostname, ep.port, timeout=30)
        conn.request("GET", "/2015-03-31/functions/")
        resp = conn.getresponse()
        return _result(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    if action == "absolute_url":
        import socket
        ep = os.environ["AWS_ENDPOINT_URL"].split("//", 1)[1]
        host, port = ep.split(":")
        with socket.create_connection((host, int(port)), timeout=30) as s:
            s.sendall(b"GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n"
                      b"Connection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return {"status": int(data.split(b" ", 2)[1]), "body": data.decode("utf-8", "replace")[:2000]}
    if action == "big":
        body = json.dumps({"x": "y" * (8 * 1024 * 1024)}).encode()
        return _result(*sigv4_client.request("lambda", "POST", "/2015-03-31/functions/x/invocations", body=body))
    return {"echo": event}
