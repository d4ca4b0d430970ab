"""SigV4 on every request: what a real endpoint refuses, and how the refusal looks on the wire."""
from __future__ import annotations

import datetime as dt
import json
from unittest import mock

import pytest
import requests

from .e2e_support import (
    assert_aws_error,
    assert_no_traceback,
    create_function,
    delete_quietly,
    describe,
    expect_error,
    send,
    sign,
    unique,
)

LIST_PATH = "/2015-03-31/functions/"


@pytest.fixture
def lam(server):
    return server.client()


def test_valid_signature_accepted_raw(server):
    """Control: the raw signing helper itself produces requests the server accepts."""
    r = send(server, sign(server, "GET", LIST_PATH))
    assert r.status_code == 200, r.content[:500]
    assert "Functions" in r.json()


def test_wrong_secret(server):
    bad = server.client(aws_secret_access_key=server.secret_key[:-1] + ("A" if server.secret_key[-1] != "A" else "B"))
    with expect_error("InvalidSignatureException", 403):
        bad.list_functions()


def test_unknown_access_key(server):
    bad = server.client(aws_access_key_id="AKIAUNKNOWNKEY000000", aws_secret_access_key="x" * 40)
    with expect_error("UnrecognizedClientException", 403):
        bad.list_functions()


def test_signature_expired_via_boto3(server):
    lam = server.client()
    stale = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(minutes=10)
    with mock.patch("botocore.auth.get_current_datetime", return_value=stale):
        with expect_error("InvalidSignatureException", 403) as err:
            lam.list_functions()
    assert "Signature expired" in err.message, describe(err.exc)


def test_signature_expired_raw(server):
    stale = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(minutes=10)
    with mock.patch("botocore.auth.get_current_datetime", return_value=stale):
        raw = sign(server, "GET", LIST_PATH)
    assert raw.headers["X-Amz-Date"] == stale.strftime("%Y%m%dT%H%M%SZ")
    resp = send(server, raw)
    doc = assert_aws_error(resp, "InvalidSignatureException", 403)
    text = json.dumps(doc)
    assert "Signature expired" in text, text


def test_signature_from_the_future(server):
    ahead = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(minutes=10)
    with mock.patch("botocore.auth.get_current_datetime", return_value=ahead):
        raw = sign(server, "GET", LIST_PATH)
    assert_aws_error(send(server, raw), "InvalidSignatureException", 403)


def test_body_tampered_after_signing(server, lam):
    name = unique("tamper")
    create_function(lam, name)
    try:
        path = f"/2017-03-31/tags/{requests.utils.quote(server.function_arn(name), safe='')}"
        body = json.dumps({"Tags": {"owner": "alice"}}).encode()
        raw = sign(server, "POST", path, body)
        evil = body.replace(b"alice", b"mallo")
        assert len(evil) == len(body)
        assert_aws_error(send(server, raw, body=evil), "InvalidSignatureException", 403)
        assert lam.list_tags(Resource=server.function_arn(name))["Tags"] == {}
        # control: the untampered request goes through
        ok = send(server, raw)
        assert ok.status_code == 204, ok.content[:500]
        assert lam.list_tags(Resource=server.function_arn(name))["Tags"] == {"owner": "alice"}
    finally:
        delete_quietly(lam, name)


def test_path_and_query_tampered_after_signing(server):
    raw = sign(server, "GET", LIST_PATH + "?MaxItems=1")
    raw.url = raw.url.replace("MaxItems=1", "MaxItems=2")
    assert_aws_error(send(server, raw), "InvalidSignatureException", 403)
    raw = sign(server, "GET", LIST_PATH)
    raw.url = raw.url.replace("/2015-03-31/functions/", "/2015-03-31/functions/x")
    assert_aws_error(send(server, raw), "InvalidSignatureException", 403)


def test_no_authorization_header(server):
    r = requests.get(server.url + LIST_PATH, verify=server.verify, timeout=30)
    assert_aws_error(r, {"MissingAuthenticationTokenException", "IncompleteSignatureException"}, 403)
    # nor with an unsupported scheme
    r = requests.get(server.url + LIST_PATH, headers={"Authorization": "Basic YWRtaW46YWRtaW4="},
                     verify=server.verify, timeout=30)
    assert_aws_error(r, {"IncompleteSignatureException", "MissingAuthenticationTokenException",
                         "InvalidSignatureException"}, 403)


def test_signed_for_another_service_or_region(server):
    raw = sign(server, "GET", LIST_PATH, service="s3")
    r = send(server, raw)
    assert r.status_code in (400, 403, 404), r.content[:500]
    assert r.headers.get("x-amzn-ErrorType"), r.headers
    assert_no_traceback(r.content)


def test_error_responses_are_aws_shaped(server):
    # A typed 404 from an authenticated request: header, JSON body, message, no traceback.
    raw = sign(server, "GET", f"/2015-03-31/functions/{unique('nope')}")
    r = send(server, raw)
    doc = assert_aws_error(r, "ResourceNotFoundException", 404)
    assert doc.get("message") or doc.get("Message"), doc
    assert r.headers.get("x-amzn-RequestId")
    # a malformed JSON body is a 4xx, not a crash
    raw = sign(server, "POST", "/2015-03-31/functions", b"{not json")
    r = send(server, raw)
    assert 400 <= r.status_code < 500, (r.status_code, r.content[:500])
    assert r.headers.get("x-amzn-ErrorType"), r.headers
    assert_no_traceback(r.content)
    # an unknown route on an authenticated request
    raw = sign(server, "GET", "/2015-03-31/no-such-thing")
    r = send(server, raw)
    assert 400 <= r.status_code < 500, (r.status_code, r.content[:500])
    assert r.headers.get("x-amzn-ErrorType"), r.headers
    assert_no_traceback(r.content)
