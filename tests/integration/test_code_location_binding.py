"""Code.Location and a layer version's Content.Location are honoured only while what they were issued
for still holds (issue 21.9), against a real `lambdalet serve`: updating the code, deleting the function
(even recreating it with the same code) or the layer version ends a URL at once instead of 10 minutes
later. A refused download is S3's 403 `AccessDenied` XML document, as for a presigned URL.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import requests

from .e2e_support import HANDLER_CODE, create_function, delete_quietly, make_zip, unique
from .tenancy_support import client_as, second_account


@pytest.fixture(scope="module")
def srv(request):
    return request.getfixturevalue("server")


def _get(srv, url: str) -> requests.Response:
    return requests.get(url, verify=srv.ca, timeout=30)


def assert_access_denied(resp: requests.Response, message: str = "Access Denied") -> None:
    assert resp.status_code == 403, (resp.status_code, resp.content[:300])
    assert resp.headers["content-type"].startswith("application/xml"), resp.headers
    doc = ET.fromstring(resp.content)
    assert doc.tag == "Error" and doc.findtext("Code") == "AccessDenied", resp.text
    assert doc.findtext("Message") == message and doc.findtext("RequestId"), resp.text


def _zip(marker: str) -> bytes:
    return make_zip({"app.py": HANDLER_CODE + f"# {marker}\n"})


def test_location_ends_when_the_code_changes_and_a_version_keeps_its_own(lam, srv):
    name, first, second = unique("loc"), _zip("first"), _zip("second")
    create_function(lam, name, zip_bytes=first)
    try:
        version = lam.publish_version(FunctionName=name)["Version"]
        latest_loc = lam.get_function(FunctionName=name)["Code"]["Location"]
        version_loc = lam.get_function(FunctionName=name, Qualifier=version)["Code"]["Location"]
        assert _get(srv, latest_loc).content == first
        lam.update_function_code(FunctionName=name, ZipFile=second)
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)
        assert_access_denied(_get(srv, latest_loc))             # the code it named is no longer $LATEST's
        assert _get(srv, lam.get_function(FunctionName=name)["Code"]["Location"]).content == second
        assert _get(srv, version_loc).content == first           # version 1 still has that code
        lam.delete_function(FunctionName=name, Qualifier=version)
        assert_access_denied(_get(srv, version_loc))
    finally:
        delete_quietly(lam, name)


def test_location_ends_with_the_function_even_recreated_with_the_same_code(lam, srv):
    name, code = unique("loc"), _zip("same")
    create_function(lam, name, zip_bytes=code)
    loc = lam.get_function(FunctionName=name)["Code"]["Location"]
    lam.delete_function(FunctionName=name)
    assert_access_denied(_get(srv, loc))
    create_function(lam, name, zip_bytes=code)                    # same name, same CodeSha256
    try:
        assert_access_denied(_get(srv, loc))
        assert _get(srv, lam.get_function(FunctionName=name)["Code"]["Location"]).content == code
    finally:
        delete_quietly(lam, name)


def test_a_location_shared_with_another_account_ends_when_the_owner_changes_the_code(lam, srv):
    """Account A lets account B read its function (GetFunction through the function's policy); B's URL
    stops working as soon as A replaces the code, e.g. to take a secret out of it."""
    account_b, key_b = second_account(srv, unique("loc-tenant"))
    lam_b = client_as(srv, "lambda", key_b)
    name, leaky = unique("loc"), _zip("secret=hunter2")
    create_function(lam, name, zip_bytes=leaky)
    try:
        lam.add_permission(FunctionName=name, StatementId="b-reads", Action="lambda:GetFunction",
                           Principal=account_b)
        loc = lam_b.get_function(FunctionName=srv.function_arn(name))["Code"]["Location"]
        assert _get(srv, loc).content == leaky
        lam.remove_permission(FunctionName=name, StatementId="b-reads")
        lam.update_function_code(FunctionName=name, ZipFile=_zip("clean"))
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)
        resp = _get(srv, loc)
        assert_access_denied(resp)
        assert b"hunter2" not in resp.content
    finally:
        delete_quietly(lam, name)


def test_layer_location_ends_with_the_layer_version(srv):
    layers = srv.client()
    name = unique("loclayer")
    content = make_zip({"python/mod.py": "X = 1\n"})
    published = layers.publish_layer_version(LayerName=name, Content={"ZipFile": content})
    loc = published["Content"]["Location"]
    assert _get(srv, loc).content == content
    layers.delete_layer_version(LayerName=name, VersionNumber=published["Version"])
    assert_access_denied(_get(srv, loc))


def test_forged_or_missing_token_is_access_denied(lam, srv):
    base = srv.url.rstrip("/") + "/_lambdalet/code"
    assert_access_denied(_get(srv, base))
    assert_access_denied(_get(srv, base + "?token=abc.def"))
