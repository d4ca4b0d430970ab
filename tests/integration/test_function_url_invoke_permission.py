"""Function URL authorization as AWS does it since October 2025 ("Control access to Lambda function
URLs"): a URL invocation needs both lambda:InvokeFunctionUrl and lambda:InvokeFunction; AddPermission's
InvokedViaFunctionUrl grants lambda:InvokeFunction only for invocations through a URL (the
lambda:InvokedViaFunctionUrl condition key), never for the Invoke API. Real server, boto3.
"""
from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from .e2e_support import create_function, delete_quietly, make_zip, unique
from .url_support import ECHO, PUBLIC, PUBLIC_INVOKE, assert_forbidden, call, user_with_policy


@pytest.fixture(scope="module")
def iam(srv):
    return srv.client("iam")


def test_a_public_url_needs_both_statements(lam, srv):
    name = unique("urlperm")
    create_function(lam, name, zip_bytes=make_zip({"app.py": ECHO}))
    try:
        url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
        lam.add_permission(FunctionName=name, **PUBLIC)
        assert_forbidden(call(srv, url))            # InvokeFunctionUrl alone: no longer enough
        statement = json.loads(lam.add_permission(FunctionName=name, **PUBLIC_INVOKE)["Statement"])
        assert statement["Action"] == "lambda:InvokeFunction"
        assert statement["Condition"] == {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}
        ok = call(srv, url)
        assert ok.status == 200, ok.body
        lam.remove_permission(FunctionName=name, StatementId=PUBLIC["StatementId"])
        assert_forbidden(call(srv, url))            # InvokeFunction alone: not enough either
    finally:
        delete_quietly(lam, name)


def test_invoked_via_url_grant_does_not_allow_the_invoke_api(lam, iam, srv):
    name = unique("urlperm")
    create_function(lam, name, zip_bytes=make_zip({"app.py": ECHO}))
    try:
        url = lam.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")["FunctionUrl"]
        arn = srv.function_arn(name)
        url_only = user_with_policy(iam, {"Effect": "Allow", "Action": "lambda:InvokeFunctionUrl", "Resource": arn})
        assert_forbidden(call(srv, url, key=url_only))
        both = user_with_policy(iam, {"Effect": "Allow", "Action": "lambda:InvokeFunctionUrl", "Resource": arn},
                     {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": arn,
                      "Condition": {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}})
        reply = call(srv, url, key=both)
        assert reply.status == 200, reply.body
        # The same identity policy does not allow Invoke through the API: the key is absent there.
        api = srv.client(aws_access_key_id=both["AccessKeyId"], aws_secret_access_key=both["SecretAccessKey"])
        with pytest.raises(ClientError) as info:
            api.invoke(FunctionName=name, Payload=b"{}")
        assert info.value.response["Error"]["Code"] == "AccessDeniedException"
    finally:
        delete_quietly(lam, name)
