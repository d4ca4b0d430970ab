"""api/query_protocol.py against botocore's own awsQuery serializer (requests) and parser (responses)."""
from __future__ import annotations

import datetime as dt

import pytest
from botocore import parsers, serialize
from botocore.awsrequest import AWSRequest

from lambdalet.api.protocol import WireRequest, load_service_model
from lambdalet.api.query_protocol import QueryProtocol
from lambdalet.iam.errors import AccessDenied, NoSuchEntity
from lambdalet.models.errors import UnrecognizedClientException

IAM = load_service_model("iam")
STS = load_service_model("sts")


def wire(model, op_name: str, params: dict, method: str = "POST") -> WireRequest:
    op = model.operation_model(op_name)
    req = serialize.create_serializer("query").serialize_to_request(params, op)
    prepared = AWSRequest(method="POST", url="https://example/", data=req["body"], headers=req["headers"]).prepare()
    body = prepared.body if isinstance(prepared.body, bytes) else (prepared.body or "").encode()
    if method == "GET":
        from urllib.parse import parse_qsl
        return WireRequest("GET", "/", parse_qsl(body.decode(), keep_blank_values=True), {}, b"")
    return WireRequest("POST", "/", [], {k.lower(): v for k, v in prepared.headers.items()}, body)


def roundtrip_in(model, op_name: str, params: dict, method: str = "POST") -> dict:
    proto = QueryProtocol(model)
    w = wire(model, op_name, params, method)
    op, labels = proto.match(w)
    assert op.name == op_name
    return proto.parse(op, w, labels)


def parse_out(model, op_name: str, result: dict) -> dict:
    proto = QueryProtocol(model)
    op = model.operation_model(op_name)
    resp = proto.serialize(op, result)
    parsed = parsers.create_parser("query").parse(
        {"body": resp.body, "headers": resp.headers, "status_code": resp.status}, op.output_shape)
    return parsed


@pytest.mark.parametrize("op_name,params", [
    ("CreateUser", {"UserName": "bob", "Path": "/a/", "Tags": [{"Key": "k", "Value": "v"}, {"Key": "k2", "Value": ""}]}),
    ("CreateRole", {"RoleName": "r", "AssumeRolePolicyDocument": '{"Statement": "x & y = z?"}', "MaxSessionDuration": 7200,
                    "Description": "ünïcode"}),
    ("ListUsers", {"PathPrefix": "/", "MaxItems": 5, "Marker": "abc=="}),
    ("ListPolicies", {"Scope": "Local", "OnlyAttached": True}),
    ("CreatePolicyVersion", {"PolicyArn": "arn:aws:iam::111122223333:policy/p", "PolicyDocument": "{}",
                             "SetAsDefault": False}),
    ("UntagRole", {"RoleName": "r", "TagKeys": ["a", "b"]}),
    ("UntagRole", {"RoleName": "r", "TagKeys": []}),
])
def test_iam_requests_parse_like_botocore_serializes(op_name, params):
    assert roundtrip_in(IAM, op_name, params) == params


def test_sts_assume_role_request_and_get():
    params = {"RoleArn": "arn:aws:iam::111122223333:role/r", "RoleSessionName": "s1", "DurationSeconds": 900,
              "PolicyArns": [{"arn": "arn:aws:iam::aws:policy/ReadOnlyAccess"}],
              "Tags": [{"Key": "a", "Value": "b"}], "TransitiveTagKeys": ["a"]}
    assert roundtrip_in(STS, "AssumeRole", params) == params
    assert roundtrip_in(STS, "GetCallerIdentity", {}, method="GET") == {}


def test_required_members_and_types_are_checked():
    proto = QueryProtocol(IAM)
    w = WireRequest("POST", "/", [], {"content-type": "application/x-www-form-urlencoded"},
                    b"Action=CreateRole&Version=2010-05-08&RoleName=bad%20name&MaxSessionDuration=abc")
    op, labels = proto.match(w)
    with pytest.raises(Exception) as e:
        proto.parse(op, w, labels)
    err = e.value
    assert err.code == "ValidationError" and err.status == 400
    assert "3 validation errors detected" in err.message
    assert "Value null at 'assumeRolePolicyDocument' failed to satisfy constraint: Member must not be null" in err.message
    assert "at 'roleName' failed to satisfy constraint: Member must satisfy regular expression pattern" in err.message


def test_unknown_action_and_version():
    proto = QueryProtocol(IAM)
    for body, code in [(b"Action=Nope&Version=2010-05-08", "InvalidAction"), (b"Version=2010-05-08", "MissingAction"),
                       (b"Action=ListUsers&Version=1999-01-01", "InvalidAction")]:
        with pytest.raises(Exception) as e:
            proto.match(WireRequest("POST", "/", [], {}, body))
        assert e.value.code == code


def test_outputs_parse_with_botocore():
    now = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    user = {"Path": "/", "UserName": "b<o>b&", "UserId": "AIDA1", "Arn": "arn:aws:iam::1:user/b", "CreateDate": now,
            "Tags": [{"Key": "k", "Value": "v"}]}
    parsed = parse_out(IAM, "CreateUser", {"User": user, "ResponseMetadata": {"RequestId": "req-1"}})
    assert parsed["User"]["UserName"] == "b<o>b&" and parsed["User"]["CreateDate"] == now
    assert parsed["User"]["Tags"] == [{"Key": "k", "Value": "v"}]
    assert parsed["ResponseMetadata"]["RequestId"] == "req-1"

    parsed = parse_out(IAM, "ListUsers", {"Users": [user, dict(user, UserName="x")], "IsTruncated": True,
                                          "Marker": "m"})
    assert [u["UserName"] for u in parsed["Users"]] == ["b<o>b&", "x"]
    assert parsed["IsTruncated"] is True and parsed["Marker"] == "m"
    assert parse_out(IAM, "ListUsers", {"Users": [], "IsTruncated": False})["Users"] == []

    parsed = parse_out(STS, "AssumeRole", {
        "Credentials": {"AccessKeyId": "A", "SecretAccessKey": "S", "SessionToken": "T", "Expiration": 1714979289.0},
        "AssumedRoleUser": {"AssumedRoleId": "AROA:s", "Arn": "arn:aws:sts::1:assumed-role/r/s"}})
    assert parsed["Credentials"]["Expiration"] == dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    assert parsed["AssumedRoleUser"]["Arn"] == "arn:aws:sts::1:assumed-role/r/s"

    parsed = parse_out(IAM, "DeleteUser", {})
    assert parsed["ResponseMetadata"]["RequestId"]


@pytest.mark.parametrize("err,code,status,kind", [
    (NoSuchEntity("The user with name x cannot be found."), "NoSuchEntity", 404, "Sender"),
    (AccessDenied("User: u is not authorized"), "AccessDenied", 403, "Sender"),
    (UnrecognizedClientException("The security token included in the request is invalid."), "InvalidClientTokenId",
     403, "Sender"),
])
def test_errors_parse_with_botocore(err, code, status, kind):
    resp = QueryProtocol(IAM).serialize_error(err)
    assert resp.status == status
    parsed = parsers.create_parser("query").parse({"body": resp.body, "headers": resp.headers, "status_code": status},
                                                 None)
    assert parsed["Error"] == {"Type": kind, "Code": code, "Message": err.message}
    assert parsed["ResponseMetadata"]["RequestId"]
