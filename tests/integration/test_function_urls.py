"""Function URLs end to end against a real `lambdalet serve`: the control plane through boto3, the data
plane through a plain HTTPS client (http.client with the server's CA) connecting to 127.0.0.1 with the
URL's Host header and SNI (so the certificate must cover *.lambda-url.<region>.localhost), or path
style (/lambda-url/<url-id>/...).

One echo function serves every case: its answer is chosen by the `mode` query parameter.
"""
from __future__ import annotations

import base64
import json
import re
from urllib.parse import urlsplit

import pytest

from lambdalet.config import Settings
from lambdalet.iam import IdentityStore
from lambdalet.iam.directory import Directory
from lambdalet.server.platform import open_keyring
from lambdalet.store.db import open_database

from .e2e_support import create_function, delete_quietly, expect_error, make_zip, unique
from .url_support import (ECHO, PUBLIC, URL_RE, assert_forbidden, call,
                          make_public, user_with_policy)



def create(lam) -> str:
    name = unique("url")
    create_function(lam, name, zip_bytes=make_zip({"app.py": ECHO}))
    return name


# ---------------------------------------------------------------------------------------------- HTTP client



# ---------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def srv(request):
    return request.getfixturevalue("server")


@pytest.fixture(scope="module")
def iam(srv):
    return srv.client("iam")


@pytest.fixture(scope="module")
def admin(srv) -> dict:
    return {"AccessKeyId": srv.access_key, "SecretAccessKey": srv.secret_key}


@pytest.fixture(scope="module")
def echo(lam):
    """An echo function with a public NONE URL on $LATEST and an AWS_IAM URL on alias `live`."""
    name = create(lam)
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    public = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    make_public(lam, name)
    private = lam.create_function_url_config(FunctionName=name, Qualifier="live", AuthType="AWS_IAM")["FunctionUrl"]
    yield {"name": name, "public": public, "private": private}
    delete_quietly(lam, name)


# ---------------------------------------------------------------------------------------------- control plane

def test_create_get_update_list_delete(lam, srv):
    name = create(lam)
    try:
        created = lam.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")
        m = URL_RE.fullmatch(created["FunctionUrl"])
        assert m and m["region"] == srv.region and int(m["port"]) == urlsplit(srv.url).port, created["FunctionUrl"]
        assert created["FunctionArn"] == srv.function_arn(name)
        # AWS's CreateFunctionUrlConfig leaves out an InvokeMode it was not given (recorded); Get reports BUFFERED
        assert created["AuthType"] == "AWS_IAM" and "InvokeMode" not in created
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", created["CreationTime"])
        assert "LastModifiedTime" not in created and "Cors" not in created
        assert created["ResponseMetadata"]["HTTPStatusCode"] == 201

        got = lam.get_function_url_config(FunctionName=name)
        assert {k: got[k] for k in ("FunctionUrl", "FunctionArn", "AuthType", "CreationTime")} == \
               {k: created[k] for k in ("FunctionUrl", "FunctionArn", "AuthType", "CreationTime")}
        assert got["InvokeMode"] == "BUFFERED"
        assert got["LastModifiedTime"]

        with expect_error("ResourceConflictException", 409) as err:
            lam.create_function_url_config(FunctionName=name, AuthType="NONE")
        assert err.message == (f"Failed to create function url config for [functionArn = {srv.function_arn(name)}]."
                               " Error message:  FunctionUrlConfig exists for this Lambda function")

        cors = {"AllowOrigins": ["https://example.com"], "AllowMethods": ["GET", "POST"], "MaxAge": 300}
        updated = lam.update_function_url_config(FunctionName=name, AuthType="NONE", Cors=cors)
        assert updated["AuthType"] == "NONE" and updated["Cors"] == cors
        assert updated["FunctionUrl"] == created["FunctionUrl"] and updated["CreationTime"] == created["CreationTime"]

        lam.publish_version(FunctionName=name)
        lam.create_alias(FunctionName=name, Name="prod", FunctionVersion="1")
        on_alias = lam.create_function_url_config(FunctionName=name, Qualifier="prod", AuthType="AWS_IAM")
        assert on_alias["FunctionArn"] == srv.function_arn(name, "prod")
        assert on_alias["FunctionUrl"] != created["FunctionUrl"]

        listed = lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"]
        assert [c["FunctionArn"] for c in listed] == [srv.function_arn(name), srv.function_arn(name, "prod")]
        page = lam.list_function_url_configs(FunctionName=name, MaxItems=1)
        assert len(page["FunctionUrlConfigs"]) == 1 and page["NextMarker"]
        rest = lam.list_function_url_configs(FunctionName=name, Marker=page["NextMarker"])
        assert [c["FunctionArn"] for c in rest["FunctionUrlConfigs"]] == [srv.function_arn(name, "prod")]

        lam.delete_alias(FunctionName=name, Name="prod")          # the alias's URL goes with it
        assert len(lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"]) == 1

        assert lam.delete_function_url_config(FunctionName=name)["ResponseMetadata"]["HTTPStatusCode"] == 204
        with expect_error("ResourceNotFoundException", 404) as err:
            lam.get_function_url_config(FunctionName=name)
        assert err.message == "The resource you requested does not exist."
        with expect_error("ResourceNotFoundException", 404):
            lam.delete_function_url_config(FunctionName=name)
        with expect_error("ResourceNotFoundException", 404):
            lam.update_function_url_config(FunctionName=name, AuthType="NONE")
        assert lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"] == []
    finally:
        delete_quietly(lam, name)


def test_control_plane_errors(lam):
    name = create(lam)
    try:
        lam.publish_version(FunctionName=name)
        # a version number is not a URL qualifier: the model's pattern refuses it (recorded from AWS)
        with expect_error("ValidationException", 400) as err:
            lam.create_function_url_config(FunctionName=name, Qualifier="1", AuthType="NONE")
        assert err.message == ("1 validation error detected: Value '1' at 'qualifier' failed to satisfy constraint: "
                               "Member must satisfy regular expression pattern: ((?!^\\d+$)^[0-9a-zA-Z-_]+$)")
        with expect_error("ValidationException", 400):     # (RESPONSE_STREAM is served: test_response_streaming.py)
            lam.create_function_url_config(FunctionName=name, AuthType="NONE", InvokeMode="STREAMING")
        with expect_error("ResourceNotFoundException", 404) as err:
            lam.create_function_url_config(FunctionName=name, Qualifier="nope", AuthType="NONE")
        assert err.message == "Function does not exist"
        with expect_error("ResourceNotFoundException", 404) as err:
            lam.create_function_url_config(FunctionName=unique("missing"), AuthType="NONE")
        assert err.message == "Function does not exist"
        with expect_error("ResourceNotFoundException", 404):
            lam.list_function_url_configs(FunctionName=unique("missing"))
    finally:
        delete_quietly(lam, name)


def test_deleted_function_takes_its_url(lam, srv):
    name = create(lam)
    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    make_public(lam, name)
    assert call(srv, url).status == 200
    lam.delete_function(FunctionName=name)
    assert_forbidden(call(srv, url))


# ---------------------------------------------------------------------------------------------- auth

def test_none_url_is_public_only_with_a_resource_policy(lam, srv):
    """Threat model: a NONE URL answers 403 until AddPermission grants lambda:InvokeFunctionUrl to "*"
    with lambda:FunctionUrlAuthType NONE, and again once the permission is removed."""
    name = create(lam)
    try:
        url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
        assert_forbidden(call(srv, url))
        # Making the function itself public (lambda:InvokeFunction to "*") does not open its URL.
        lam.add_permission(FunctionName=name, StatementId="invoke", Action="lambda:InvokeFunction", Principal="*")
        assert_forbidden(call(srv, url))
        statement = json.loads(lam.add_permission(FunctionName=name, **PUBLIC)["Statement"])
        assert statement == {"Sid": "FunctionURLAllowPublicAccess", "Effect": "Allow", "Principal": "*",
                             "Action": "lambda:InvokeFunctionUrl", "Resource": srv.function_arn(name),
                             "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}}}
        ok = call(srv, url)
        assert ok.status == 200, ok.body
        event = ok.json()
        assert event["requestContext"]["accountId"] == "anonymous" and "authorizer" not in event["requestContext"]
        lam.remove_permission(FunctionName=name, StatementId="FunctionURLAllowPublicAccess")
        assert_forbidden(call(srv, url))
    finally:
        delete_quietly(lam, name)


def test_public_permission_does_not_open_an_aws_iam_url(lam, srv, echo):
    """The NONE grant names the auth type: it does not make the alias's AWS_IAM URL public."""
    lam.add_permission(FunctionName=echo["name"], Qualifier="live", **PUBLIC)
    try:
        assert_forbidden(call(srv, echo["private"]))
    finally:
        lam.remove_permission(FunctionName=echo["name"], Qualifier="live", StatementId=PUBLIC["StatementId"])


def test_aws_iam_url(lam, iam, srv, echo, admin):
    url = echo["private"]
    assert_forbidden(call(srv, url))                                          # unsigned
    ok = call(srv, url, key=admin)
    assert ok.status == 200, ok.body
    event = ok.json()
    who = event["requestContext"]["authorizer"]["iam"]
    assert who["accessKey"] == admin["AccessKeyId"] and who["accountId"] == srv.account_id
    assert who["userArn"].startswith(f"arn:aws:iam::{srv.account_id}:") and who["callerId"] == who["userId"]
    assert event["requestContext"]["accountId"] == srv.account_id
    assert ok.header("x-invoked-arn") == srv.function_arn(echo["name"], "live")

    nobody = user_with_policy(iam, {"Effect": "Allow", "Action": "lambda:GetFunction", "Resource": "*"})
    assert_forbidden(call(srv, url, key=nobody))
    allowed = user_with_policy(iam, {"Effect": "Allow", "Action": "lambda:InvokeFunctionUrl",
                          "Resource": srv.function_arn(echo["name"], "live"),
                          "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}},
                    {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": srv.function_arn(echo["name"], "live"),
                     "Condition": {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}})
    reply = call(srv, url, key=allowed)
    assert reply.status == 200, reply.body
    bad_secret = dict(admin, SecretAccessKey="x" * 40)
    assert_forbidden(call(srv, url, key=bad_secret))


def test_cross_account_needs_the_functions_resource_policy(lam, srv, echo):
    """Another account's administrator (identity policy: everything) is refused until the function's
    policy names its account for lambda:InvokeFunctionUrl on that alias."""
    settings = Settings(data_dir=srv.data_dir)
    db = open_database(settings.db_url)          # as an operator would make a tenant (test_authorization.py)
    try:
        account = Directory(db).create_account(unique("url-tenant"))
        creds = IdentityStore(db, open_keyring(settings)).create_access_key(account, "admin", administrator=True)
    finally:
        db.close()
    key = {"AccessKeyId": creds.access_key_id, "SecretAccessKey": creds.secret_access_key}
    assert_forbidden(call(srv, echo["private"], key=key))
    lam.add_permission(FunctionName=echo["name"], Qualifier="live", StatementId="tenant",
                       Action="lambda:InvokeFunctionUrl", Principal=account, FunctionUrlAuthType="AWS_IAM")
    lam.add_permission(FunctionName=echo["name"], Qualifier="live", StatementId="tenant-invoke",
                       Action="lambda:InvokeFunction", Principal=account, InvokedViaFunctionUrl=True)
    try:
        reply = call(srv, echo["private"], key=key)
        assert reply.status == 200, reply.body
        assert reply.json()["requestContext"]["authorizer"]["iam"]["accountId"] == account
    finally:
        lam.remove_permission(FunctionName=echo["name"], Qualifier="live", StatementId="tenant")
        lam.remove_permission(FunctionName=echo["name"], Qualifier="live", StatementId="tenant-invoke")
    assert_forbidden(call(srv, echo["private"], key=key))


# ---------------------------------------------------------------------------------------------- request -> event

def test_event_shape(srv, echo):
    reply = call(srv, echo["public"], "POST", "/a/b%20c", query="x=1&x=2&y=&z=%2F",
                 headers=[("X-Multi", "one"), ("X-Multi", "two"), ("Cookie", "c1=v1; c2=v2"),
                          ("Content-Type", "application/json"), ("User-Agent", "url-test")],
                 body=b'{"k": "v"}')
    assert reply.status == 200, reply.body
    event = reply.json()
    m = URL_RE.fullmatch(echo["public"])
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/a/b%20c" and event["rawQueryString"] == "x=1&x=2&y=&z=%2F"
    assert event["queryStringParameters"] == {"x": "1,2", "y": "", "z": "/"}
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert event["headers"]["x-multi"] == "one,two" and "cookie" not in event["headers"]
    assert event["headers"]["host"] == f"{m['id']}.lambda-url.{m['region']}.localhost:{m['port']}"
    assert event["headers"]["x-forwarded-proto"] == "https"
    assert event["body"] == '{"k": "v"}' and event["isBase64Encoded"] is False
    rc = event["requestContext"]
    assert rc["apiId"] == m["id"] and rc["domainPrefix"] == m["id"]
    assert rc["domainName"] == f"{m['id']}.lambda-url.{m['region']}.localhost"
    assert rc["http"] == {"method": "POST", "path": "/a/b%20c", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                          "userAgent": "url-test"}
    assert rc["routeKey"] == "$default" and rc["stage"] == "$default"
    assert rc["requestId"] == reply.header("x-amzn-requestid")
    assert re.fullmatch(r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000", rc["time"]) and rc["timeEpoch"] > 0


def test_binary_body_round_trip_and_path_style(srv, echo):
    data = bytes(range(256)) * 4
    reply = call(srv, echo["public"], "PUT", "/upload", headers=[("Content-Type", "application/octet-stream")],
                 body=data, style="path")
    assert reply.status == 200, reply.body
    event = reply.json()
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == data
    assert event["rawPath"] == "/upload"
    assert "queryStringParameters" not in event and "cookies" not in event
    binary = call(srv, echo["public"], query="mode=binary", style="path")
    assert binary.status == 200 and binary.body == bytes(range(256))
    assert binary.header("content-type") == "application/octet-stream"


# ---------------------------------------------------------------------------------------------- result -> response

def test_response_mapping(srv, echo):
    custom = call(srv, echo["public"], query="mode=custom")
    assert custom.status == 201 and custom.body == b"created"
    assert custom.header("content-type") == "text/plain" and custom.header("x-custom") == "yes"
    assert custom.headers("set-cookie") == ["a=1; Max-Age=60", "b=2"]

    string = call(srv, echo["public"], query="mode=string")
    assert string.status == 200 and string.header("content-type") == "application/json"
    assert string.body == b'"Hello, world!"'

    plain = call(srv, echo["public"], query="mode=plain")
    assert plain.status == 200 and plain.header("content-type") == "application/json"
    assert plain.json() == {"message": "hi"}


def test_failing_function_is_502(srv, echo):
    reply = call(srv, echo["public"], query="mode=raise")
    assert reply.status == 502 and reply.body == b"Internal Server Error"


def test_throttled_url_is_429(lam, srv):
    name = create(lam)
    try:
        url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
        make_public(lam, name)
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)   # AWS's "deactivate"
        reply = call(srv, url)
        assert reply.status == 429 and reply.json() == {"Message": "Rate Exceeded."}
        lam.delete_function_concurrency(FunctionName=name)
        assert call(srv, url).status == 200
    finally:
        delete_quietly(lam, name)


# ---------------------------------------------------------------------------------------------- CORS

def test_cors_preflight_and_response_headers(lam, srv):
    name = create(lam)
    try:
        url = lam.create_function_url_config(
            FunctionName=name, AuthType="NONE",
            Cors={"AllowOrigins": ["https://app.example"], "AllowMethods": ["GET", "POST"],
                  "AllowHeaders": ["x-custom"], "ExposeHeaders": ["x-invoked-arn"], "MaxAge": 600,
                  "AllowCredentials": True})["FunctionUrl"]
        make_public(lam, name)
        pre = call(srv, url, "OPTIONS", "/any", headers=[("Origin", "https://app.example"),
                                                         ("Access-Control-Request-Method", "POST")])
        assert pre.status == 200
        assert pre.header("access-control-allow-origin") == "https://app.example"
        assert pre.header("access-control-allow-methods") == "GET,POST"
        assert pre.header("access-control-allow-headers") == "x-custom"
        assert pre.header("access-control-max-age") == "600"
        assert pre.header("access-control-allow-credentials") == "true"

        other = call(srv, url, "OPTIONS", "/", headers=[("Origin", "https://evil.example"),
                                                        ("Access-Control-Request-Method", "GET")])
        assert other.status == 200 and other.header("access-control-allow-origin") is None

        actual = call(srv, url, headers=[("Origin", "https://app.example")])
        assert actual.status == 200
        assert actual.header("access-control-allow-origin") == "https://app.example"
        assert actual.header("access-control-expose-headers") == "x-invoked-arn"
        assert call(srv, url, headers=[("Origin", "https://evil.example")]).header(
            "access-control-allow-origin") is None
    finally:
        delete_quietly(lam, name)


def test_unknown_url_is_forbidden(srv, echo):
    m = URL_RE.fullmatch(echo["public"])
    other = echo["public"].replace(m["id"], "a" * 32)
    assert_forbidden(call(srv, other))
    assert_forbidden(call(srv, other, style="path"))


def test_request_payload_limit(srv, echo):
    too_big = call(srv, echo["public"], "POST", headers=[("Content-Type", "application/octet-stream")],
                   body=b"x" * (6 * 1024 * 1024 + 1))
    assert too_big.status == 413, too_big.body
    # the event counts, not just the body: 5 MB of binary is ~6.7 MB once base64-encoded
    encoded = call(srv, echo["public"], "POST", headers=[("Content-Type", "application/octet-stream")],
                   body=b"x" * (5 * 1024 * 1024))
    assert encoded.status == 413, encoded.body
    head = call(srv, echo["public"], "HEAD")
    assert head.status == 200 and head.body == b""
