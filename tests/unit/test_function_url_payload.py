"""Function URLs' pure mappings (api/function_url_payload.py): request -> event (payload format 2.0),
result -> HTTP response, CORS; what a response may do to its browser origin (api/function_url_origin.py);
and the server certificate covering the URL hosts (server/tls.py)."""
from __future__ import annotations

import base64
import json

import pytest
from cryptography import x509

from lambdalet.api.function_url_origin import host_style, path_style
from lambdalet.api.function_url_payload import (HttpResult, InvalidFunctionResponse, apply_cors, build_event,
                                                is_preflight, map_response, preflight, request_time)
from lambdalet.server.tls import ensure_tls

URL_ID = "abcdefghijklmnopqrstuvwxyz012345"


def _event(**over):
    args = dict(url_id=URL_ID, domain_name=f"{URL_ID}.lambda-url.us-east-1.localhost", method="GET",
                raw_path="/p", raw_query="", headers=[("Host", "h"), ("User-Agent", "ua")], body=b"",
                source_ip="10.0.0.1", protocol="HTTP/1.1", request_id="rid", epoch_ms=1583348638390,
                account_id="anonymous")
    args.update(over)
    return build_event(**args)


def test_minimal_event_is_aws_shaped():
    event = _event()
    assert list(event) == ["version", "routeKey", "rawPath", "rawQueryString", "headers", "requestContext",
                           "isBase64Encoded"]
    assert event["headers"] == {"host": "h", "user-agent": "ua"}
    assert event["requestContext"] == {
        "accountId": "anonymous", "apiId": URL_ID, "domainName": f"{URL_ID}.lambda-url.us-east-1.localhost",
        "domainPrefix": URL_ID,
        "http": {"method": "GET", "path": "/p", "protocol": "HTTP/1.1", "sourceIp": "10.0.0.1", "userAgent": "ua"},
        "requestId": "rid", "routeKey": "$default", "stage": "$default", "time": "04/Mar/2020:19:03:58 +0000",
        "timeEpoch": 1583348638390}
    assert event["isBase64Encoded"] is False and "body" not in event


def test_query_cookies_and_repeated_headers():
    event = _event(raw_query="parameter1=value1&parameter1=value2&parameter2=value",
                   headers=[("Header2", "value1"), ("header2", "value2"), ("Cookie", "cookie1=a; cookie2=b"),
                            ("cookie", "cookie3=c")])
    assert event["rawQueryString"] == "parameter1=value1&parameter1=value2&parameter2=value"
    assert event["queryStringParameters"] == {"parameter1": "value1,value2", "parameter2": "value"}
    assert event["headers"] == {"header2": "value1,value2"}
    assert event["cookies"] == ["cookie1=a", "cookie2=b", "cookie3=c"]


@pytest.mark.parametrize("content_type,body,encoded", [
    ("application/json", b'{"a": 1}', False),
    ("text/plain; charset=utf-8", "héllo".encode(), False),
    ("application/vnd.api+json", b"{}", False),
    ("application/octet-stream", b"\x00\x01", True),
    ("image/png", b"\x89PNG", True),
    (None, b"abc", True),                         # no content type: base64, as AWS does
    ("text/plain", b"\xff\xfe", True),            # declared text, but not UTF-8
])
def test_body_text_or_base64(content_type, body, encoded):
    headers = [("content-type", content_type)] if content_type else []
    event = _event(method="POST", headers=headers, body=body)
    assert event["isBase64Encoded"] is encoded
    assert (base64.b64decode(event["body"]) if encoded else event["body"].encode()) == body


def test_iam_authorizer_and_account():
    iam = {"accessKey": "AKIA", "accountId": "111122223333", "callerId": "AIDA", "cognitoIdentity": None,
           "principalOrgId": None, "userArn": "arn:aws:iam::111122223333:user/u", "userId": "AIDA"}
    ctx = _event(account_id="111122223333", iam=iam)["requestContext"]
    assert ctx["accountId"] == "111122223333" and ctx["authorizer"] == {"iam": iam}


def test_request_time_is_locale_free():
    assert request_time(0) == "01/Jan/1970:00:00:00 +0000"


# ---------------------------------------------------------------- responses


@pytest.mark.parametrize("payload", [b'"Hello, world!"', b'{"message": "Hello, world!"}', b"[1, 2]", b"42",
                                     b"null", b"not json", b'{"body": "no status code"}'])
def test_anything_without_status_code_is_a_200_json_body(payload):
    r = map_response(payload)
    assert (r.status, r.header("content-type"), r.body) == (200, "application/json", payload)


def test_response_description_is_used_as_is():
    r = map_response(json.dumps({"statusCode": 201, "headers": {"Content-Type": "text/html", "X-N": 5,
                                                                "Content-Length": "999"},
                                 "body": "<p>hi</p>", "cookies": ["a=1; Max-Age=60", "b=2"],
                                 "isBase64Encoded": False}).encode())
    assert r.status == 201 and r.body == b"<p>hi</p>"
    assert r.headers == [("content-type", "text/html"), ("x-n", "5"), ("set-cookie", "a=1; Max-Age=60"),
                         ("set-cookie", "b=2")]


def test_base64_body_and_defaults():
    r = map_response(json.dumps({"statusCode": 200, "isBase64Encoded": True,
                                 "body": base64.b64encode(b"\x00\xff").decode()}).encode())
    assert r.body == b"\x00\xff" and r.header("content-type") == "application/json"
    empty = map_response(b'{"statusCode": 204}')
    assert (empty.status, empty.body) == (204, b"")


@pytest.mark.parametrize("desc", [{"statusCode": "200"}, {"statusCode": True}, {"statusCode": 99},
                                  {"statusCode": 200, "headers": ["x"]}, {"statusCode": 200, "cookies": "a=1"},
                                  {"statusCode": 200, "headers": {"x": {"nested": 1}}},
                                  {"statusCode": 200, "isBase64Encoded": True, "body": "***"},
                                  # interim statuses are no final response (AWS: 502)
                                  {"statusCode": 100}, {"statusCode": 101}, {"statusCode": 103}, {"statusCode": 199},
                                  # header splitting, or bytes the server could not send
                                  {"statusCode": 200, "headers": {"x": "a\r\nSet-Cookie: s=1"}},
                                  {"statusCode": 200, "headers": {"bad name": "v"}},
                                  {"statusCode": 200, "headers": {"x": "\u2603"}},
                                  {"statusCode": 200, "cookies": ["a=1\nSet-Cookie: b=2"]}])
def test_unusable_descriptions_are_refused(desc):
    with pytest.raises(InvalidFunctionResponse):
        map_response(json.dumps(desc).encode())


def test_lowest_final_status_and_tab_in_a_value_are_fine():
    r = map_response(json.dumps({"statusCode": 200, "headers": {"X-T": "a\tb"}}).encode())
    assert r.status == 200 and r.header("x-t") == "a\tb"


# ---------------------------------------------------------------- browser origins

HOST = f"{URL_ID}.lambda-url.us-east-1.localhost"


def _cookies(*values: str) -> HttpResult:
    return HttpResult(200, [("content-type", "text/html")] + [("set-cookie", v) for v in values], b"<p>")


def test_host_style_drops_cookies_scoped_beyond_the_urls_host():
    r = host_style(_cookies("a=1; Path=/", f"b=2; Domain={HOST}", f"c=3; domain=.{HOST.upper()}; Secure",
                            "d=4; Domain=lambda-url.us-east-1.localhost", "e=5; Domain=localhost",
                            "f=6; Domain=.us-east-1.localhost", f"g=7; Domain={HOST}; Domain=localhost",
                            "h=8; Domain=", "i=9; Domain=other.lambda-url.us-east-1.localhost"), HOST)
    assert [v.split("=")[0] for k, v in r.headers if k == "set-cookie"] == ["a", "b", "c", "h"]
    assert r.header("content-type") == "text/html" and r.header("content-security-policy") is None


def test_path_style_sandboxes_and_confines_cookies():
    prefix = f"/lambda-url/{URL_ID}"
    r = path_style(HttpResult(200, [("content-type", "text/html"), ("content-security-policy", "default-src *"),
                                    ("x-content-type-options", "sniff-please"), ("service-worker-allowed", "/"),
                                    ("set-cookie", "a=1; Domain=127.0.0.1; Path=/; HttpOnly"),
                                    ("set-cookie", "b=2"), ("set-cookie", "c=3; path=/app; SameSite=Lax"),
                                    ("set-cookie", "d=4; Path=/x; Path=../../other"),
                                    ("set-cookie2", "e=5; Version=1")], b"<script>x()</script>"), URL_ID)
    assert r.headers == [("content-type", "text/html"), ("content-security-policy", "default-src *"),
                         ("set-cookie", f"a=1; HttpOnly; Path={prefix}"), ("set-cookie", f"b=2; Path={prefix}"),
                         ("set-cookie", f"c=3; SameSite=Lax; Path={prefix}/app"), ("set-cookie", f"d=4; Path={prefix}"),
                         ("content-security-policy", "sandbox"), ("x-content-type-options", "nosniff")]


# ---------------------------------------------------------------- CORS

CORS = {"AllowOrigins": ["https://app.example"], "AllowMethods": ["GET", "POST"], "AllowHeaders": ["x-a", "x-b"],
        "ExposeHeaders": ["x-e"], "MaxAge": 60, "AllowCredentials": True}


def test_preflight():
    headers = {"origin": "https://app.example", "access-control-request-method": "POST"}
    assert is_preflight("OPTIONS", headers) and not is_preflight("GET", headers)
    assert not is_preflight("OPTIONS", {"origin": "https://app.example"})
    r = preflight(CORS, headers)
    assert r.status == 200 and dict(r.headers) == {
        "vary": "Origin", "access-control-allow-origin": "https://app.example",
        "access-control-allow-methods": "GET,POST", "access-control-allow-headers": "x-a,x-b",
        "access-control-allow-credentials": "true", "access-control-max-age": "60"}
    refused_method = preflight(CORS, dict(headers, **{"access-control-request-method": "DELETE"}))
    assert refused_method.header("access-control-allow-origin") is None
    refused_origin = preflight(CORS, dict(headers, origin="https://evil.example"))
    assert refused_origin.header("access-control-allow-origin") is None


def test_wildcard_origin():
    r = preflight({"AllowOrigins": ["*"], "AllowMethods": ["*"]},
                  {"origin": "https://x.example", "access-control-request-method": "PATCH"})
    assert r.header("access-control-allow-origin") == "*"


def test_configured_cors_headers_win_over_the_functions():
    r = map_response(b'{"statusCode": 200, "headers": {"Access-Control-Allow-Origin": "*", "x": "y"}}')
    apply_cors(CORS, "https://app.example", r)
    assert r.headers.count(("access-control-allow-origin", "https://app.example")) == 1
    assert ("access-control-allow-origin", "*") not in r.headers
    assert r.header("access-control-expose-headers") == "x-e" and r.header("x") == "y"
    untouched = map_response(b'"x"')
    assert apply_cors(CORS, "https://evil.example", untouched).header("access-control-allow-origin") is None
    assert apply_cors(None, "https://app.example", map_response(b'"x"')).headers == [("content-type",
                                                                                        "application/json")]


# ---------------------------------------------------------------- the certificate


def _dns_names(path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
               .get_values_for_type(x509.DNSName))


def test_certificate_is_reissued_for_the_url_hosts_keeping_the_ca(tmp_path):
    before = ensure_tls(tmp_path, ["127.0.0.1"])
    ca = before.ca_cert.read_bytes()
    assert "*.lambda-url.us-east-1.localhost" not in _dns_names(before.cert)
    after = ensure_tls(tmp_path, ["127.0.0.1", "*.lambda-url.us-east-1.localhost"])
    assert "*.lambda-url.us-east-1.localhost" in _dns_names(after.cert)
    assert after.ca_cert.read_bytes() == ca
    issued = after.cert.read_bytes()
    ensure_tls(tmp_path, ["127.0.0.1", "*.lambda-url.us-east-1.localhost"])
    assert after.cert.read_bytes() == issued          # no re-issue once covered
