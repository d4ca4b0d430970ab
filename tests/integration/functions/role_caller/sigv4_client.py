"""A stdlib-only AWS client for code running inside a lambdalet environment (boto3 is not there).

Signs requests with SigV4 using the execution role's temporary credentials from the environment
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) and sends them to AWS_ENDPOINT_URL,
which init points at its API proxy (127.0.0.1:9002).
"""
import datetime
import hashlib
import hmac
import http.client
import json
import os
import urllib.parse


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _quote(s: str) -> str:
    return urllib.parse.quote(s, safe="-_.~")


def request(service, method, path, query=None, body=b"", headers=None, region=None):
    """-> (status, headers dict (lower-case names), body bytes)"""
    env = os.environ
    endpoint = urllib.parse.urlsplit(env["AWS_ENDPOINT_URL"])
    region = region or env.get("AWS_REGION", "us-east-1")
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    host = endpoint.netloc
    hdrs = {"host": host, "x-amz-date": amz_date}
    if env.get("AWS_SESSION_TOKEN"):
        hdrs["x-amz-security-token"] = env["AWS_SESSION_TOKEN"]
    for k, v in (headers or {}).items():
        hdrs[k.lower()] = v
    payload_hash = hashlib.sha256(body).hexdigest()
    hdrs["x-amz-content-sha256"] = payload_hash
    # AWS's canonical URI: each segment URI-encoded once more (non-S3 services)
    canonical_uri = "/".join(_quote(seg) for seg in path.split("/"))
    pairs = sorted((_quote(k), _quote(v)) for k, v in (query or {}).items())
    canonical_query = "&".join(f"{k}={v}" for k, v in pairs)
    signed = sorted(hdrs)
    canonical_headers = "".join(f"{k}:{' '.join(str(hdrs[k]).split())}\n" for k in signed)
    signed_headers = ";".join(signed)
    creq = "\n".join([method, canonical_uri, canonical_query, canonical_headers, signed_headers, payload_hash])
    scope = f"{day}/{region}/{service}/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    key = _hmac(("AWS4" + env["AWS_SECRET_ACCESS_KEY"]).encode(), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    hdrs["authorization"] = (f"AWS4-HMAC-SHA256 Credential={env['AWS_ACCESS_KEY_ID']}/{scope}, "
                             f"SignedHeaders={signed_headers}, Signature={signature}")
    url = urllib.parse.quote(path) + (f"?{canonical_query}" if canonical_query else "")
    conn = http.client.HTTPConnection(endpoint.hostname, endpoint.port or 80, timeout=60)
    try:
        conn.request(method, url, body=body, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def invoke(function_name, payload=None):
    return request("lambda", "POST", f"/2015-03-31/functions/{function_name}/invocations",
                   body=json.dumps(payload or {}).encode(), headers={"content-type": "application/json"})


def query_api(service, action, version, params=None):
    form = {"Action": action, "Version": version, **(params or {})}
    body = urllib.parse.urlencode(form).encode()
    return request(service, "POST", "/", body=body,
                   headers={"content-type": "application/x-www-form-urlencoded; charset=utf-8"})


def json_api(service, target, params=None):
    return request(service, "POST", "/", body=json.dumps(params or {}).encode(),
                   headers={"content-type": "application/x-amz-json-1.1", "x-amz-target": target})
