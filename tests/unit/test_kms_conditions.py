"""KMS condition keys (kms/condition_keys.py) in KmsService's decisions, without a server."""
from __future__ import annotations

import json

import pytest

from lambdalet.kms import condition_keys as CK
from lambdalet.kms import errors as E

from .kms_support import ACCOUNT, OTHER, ROOT, make_ctx


def _policy(*statements) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def test_encryption_context_keys():
    assert CK.encryption_context(None) == {}
    assert CK.encryption_context({"b": "2", "a": "1"}) == {
        "kms:EncryptionContextKeys": ["a", "b"], "kms:EncryptionContext:a": "1", "kms:EncryptionContext:b": "2"}
    assert CK.cryptographic({})["kms:EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    assert CK.request_alias("alias/x") == {"kms:RequestAlias": "alias/x"}
    assert CK.request_alias("arn:aws:kms:us-east-1:123456789012:alias/a/b") == {"kms:RequestAlias": "alias/a/b"}
    assert CK.request_alias("arn:aws:kms:us-east-1:123456789012:key/abc") == {}


def test_deny_on_context_applies_to_decrypt_and_generate_data_key(kms_env):
    md = kms_env.key()
    kms_env.call("put_key_policy", KeyId=md["KeyId"], PolicyName="default", Policy=_policy(
        {"Effect": "Allow", "Principal": ROOT, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Principal": "*", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*",
         "Condition": {"StringNotEquals": {"kms:EncryptionContext:purpose": "x"}}}))
    x = kms_env.call("encrypt", KeyId=md["KeyId"], Plaintext=b"1", EncryptionContext={"purpose": "x"})["CiphertextBlob"]
    y = kms_env.call("encrypt", KeyId=md["KeyId"], Plaintext=b"2", EncryptionContext={"purpose": "y"})["CiphertextBlob"]
    assert kms_env.call("decrypt", CiphertextBlob=x, EncryptionContext={"purpose": "x"})["Plaintext"] == b"1"
    with pytest.raises(E.AccessDeniedException):
        kms_env.call("decrypt", CiphertextBlob=y, EncryptionContext={"purpose": "y"})
    with pytest.raises(E.AccessDeniedException):
        kms_env.call("generate_data_key", KeyId=md["KeyId"], KeySpec="AES_256", EncryptionContext={"purpose": "y"})
    kms_env.call("generate_data_key", KeyId=md["KeyId"], KeySpec="AES_256", EncryptionContext={"purpose": "x"})


def test_re_encrypt_checks_each_side_with_its_own_context(kms_env):
    md = kms_env.key()
    kms_env.call("put_key_policy", KeyId=md["KeyId"], PolicyName="default", Policy=_policy(
        {"Effect": "Allow", "Principal": ROOT, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Principal": "*", "Action": "kms:ReEncryptTo", "Resource": "*",
         "Condition": {"Null": {"kms:EncryptionContextKeys": "true"}}}))
    blob = kms_env.call("encrypt", KeyId=md["KeyId"], Plaintext=b"1", EncryptionContext={"a": "1"})["CiphertextBlob"]
    with pytest.raises(E.AccessDeniedException):        # the destination has no context
        kms_env.call("re_encrypt", CiphertextBlob=blob, SourceEncryptionContext={"a": "1"}, DestinationKeyId=md["KeyId"])
    kms_env.call("re_encrypt", CiphertextBlob=blob, SourceEncryptionContext={"a": "1"}, DestinationKeyId=md["KeyId"],
             DestinationEncryptionContext={"b": "2"})


def test_caller_account_is_the_callers_not_the_keys(kms_env):
    md = kms_env.key()
    kms_env.call("put_key_policy", KeyId=md["KeyId"], PolicyName="default", Policy=_policy(
        {"Effect": "Allow", "Principal": ROOT, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*",
         "Condition": {"StringEquals": {"kms:CallerAccount": OTHER}}}))
    assert kms_env.call("encrypt", make_ctx(OTHER), KeyId=md["Arn"], Plaintext=b"x")["KeyId"] == md["Arn"]
    with pytest.raises(E.AccessDeniedException):
        kms_env.call("encrypt", make_ctx("333333333333"), KeyId=md["Arn"], Plaintext=b"x")
    assert ACCOUNT != OTHER


def test_resource_tags_and_key_properties(kms_env):
    statements = lambda: (  # noqa: E731
        {"Effect": "Allow", "Principal": ROOT, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*",
         "Condition": {"StringNotEquals": {"aws:ResourceTag/team": "blue"}}},
        {"Effect": "Deny", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*",
         "Condition": {"StringNotEquals": {"kms:KeySpec": "SYMMETRIC_DEFAULT", "kms:KeyOrigin": "AWS_KMS"}}})
    blue = kms_env.key(Tags=[{"TagKey": "team", "TagValue": "blue"}])
    red = kms_env.key(Tags=[{"TagKey": "team", "TagValue": "red"}])
    for md in (blue, red):
        kms_env.call("put_key_policy", KeyId=md["KeyId"], PolicyName="default", Policy=_policy(*statements()))
    kms_env.call("encrypt", KeyId=blue["KeyId"], Plaintext=b"x")
    with pytest.raises(E.AccessDeniedException):
        kms_env.call("encrypt", KeyId=red["KeyId"], Plaintext=b"x")
