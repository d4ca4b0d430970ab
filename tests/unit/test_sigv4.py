"""Our SigV4 verifier against botocore's signer: what boto3 signs, we accept; any change, we refuse."""
import time

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from urllib.parse import parse_qsl, urlsplit

from lambdalet.api import sigv4
from lambdalet.models.errors import (IncompleteSignatureException, InvalidSignatureException,
                                     MissingAuthenticationTokenException, UnrecognizedClientException)

KEY, SECRET = "LKIATESTTESTTEST0001", "s3cr3t/with+chars"


def _signed(method="POST", url="https://127.0.0.1:9000/2017-03-31/tags/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Af?b=2&a=1%202",
            body=b'{"Tags": {"a": "b"}}', secret=SECRET):
    req = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(KEY, secret), "lambda", "us-east-1").add_auth(req)
    prepared = req.prepare()
    parts = urlsplit(prepared.url)
    headers = {k.lower(): v for k, v in prepared.headers.items()}
    headers["host"] = parts.netloc
    return method, parts.path, parse_qsl(parts.query, keep_blank_values=True), headers, body


def _lookup(sreq):
    return SECRET if sreq.access_key_id == KEY else None


def test_accepts_what_botocore_signs():
    s = sigv4.verify(*_signed(), _lookup)
    assert (s.access_key_id, s.region, s.service) == (KEY, "us-east-1", "lambda")


def test_refuses_wrong_secret_tampered_body_path_and_query():
    method, path, query, headers, body = _signed(secret="wrong")
    with pytest.raises(InvalidSignatureException):
        sigv4.verify(method, path, query, headers, body, _lookup)
    method, path, query, headers, body = _signed()
    for args in [(method, path, query, headers, body + b" "),
                 (method, path + "x", query, headers, body),
                 (method, path, query + [("c", "3")], headers, body),
                 ("PUT", path, query, headers, body)]:
        with pytest.raises(InvalidSignatureException):
            sigv4.verify(*args, _lookup)


def test_unknown_key_missing_header_and_skew():
    with pytest.raises(UnrecognizedClientException):
        sigv4.verify(*_signed(), lambda s: None)
    method, path, query, headers, body = _signed()
    with pytest.raises(MissingAuthenticationTokenException):
        sigv4.verify(method, path, query, {k: v for k, v in headers.items() if k != "authorization"}, body, _lookup)
    with pytest.raises(IncompleteSignatureException):
        sigv4.verify(method, path, query, {**headers, "authorization": "AWS4-HMAC-SHA256 garbage"}, body, _lookup)
    with pytest.raises(InvalidSignatureException, match="Signature expired"):
        sigv4.verify(*_signed(), _lookup, now=time.time() + 301)
    with pytest.raises(InvalidSignatureException, match="not yet current"):
        sigv4.verify(*_signed(), _lookup, now=time.time() - 301)
