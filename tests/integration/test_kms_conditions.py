"""KMS condition keys through boto3 (issue 21.3): a key policy conditioned on kms:EncryptionContext:<key>,
kms:EncryptionContextKeys, kms:CallerAccount, kms:EncryptionAlgorithm, kms:RequestAlias or
kms:ViaService applies (Deny) and matches (Allow), also for a second account."""
from __future__ import annotations

import json

import pytest

from .e2e_support import ROLE, WAIT, default_zip, expect_error, unique
from .tenancy_support import client_as, second_account


def _policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


@pytest.fixture(scope="module")
def kms(server):
    return server.client("kms")


@pytest.fixture(scope="module")
def root(server) -> dict:
    return {"AWS": f"arn:aws:iam::{server.account_id}:root"}


def test_decrypt_is_denied_unless_the_context_says_so(kms, root):
    key = kms.create_key()["KeyMetadata"]["Arn"]
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=_policy(
        {"Effect": "Allow", "Principal": root, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*",
         "Condition": {"StringNotEquals": {"kms:EncryptionContext:purpose": "x"}}}))
    good = kms.encrypt(KeyId=key, Plaintext=b"for x", EncryptionContext={"purpose": "x"})["CiphertextBlob"]
    bad = kms.encrypt(KeyId=key, Plaintext=b"for y", EncryptionContext={"purpose": "y"})["CiphertextBlob"]
    bare = kms.encrypt(KeyId=key, Plaintext=b"no context")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=good, EncryptionContext={"purpose": "x"})["Plaintext"] == b"for x"
    with expect_error("AccessDeniedException", 400) as err:
        kms.decrypt(CiphertextBlob=bad, EncryptionContext={"purpose": "y"})
    assert "kms:Decrypt" in err.message and "explicit deny" in err.message
    with expect_error("AccessDeniedException", 400):
        kms.decrypt(CiphertextBlob=bare)                     # no context at all: the Deny applies too
    # Claiming purpose=x for the y ciphertext gets past the policy, not past the cryptography.
    with expect_error("InvalidCiphertextException", 400):
        kms.decrypt(CiphertextBlob=bad, EncryptionContext={"purpose": "x"})


def test_an_allow_conditioned_on_the_context_matches(server, kms, root):
    iam = server.client("iam")
    user = unique("kmsuser")
    iam.create_user(UserName=user)          # no IAM policy: only the key policy can let it in
    creds = iam.create_access_key(UserName=user)["AccessKey"]
    user_kms = client_as(server, "kms", creds)
    key = kms.create_key()["KeyMetadata"]["Arn"]
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=_policy(
        {"Effect": "Allow", "Principal": root, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{server.account_id}:user/{user}"},
         "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
         "Condition": {"StringEquals": {"kms:EncryptionContext:tenant": "blue",
                                        "kms:EncryptionAlgorithm": "SYMMETRIC_DEFAULT"},
                       "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["tenant", "doc"]}}}))
    blob = user_kms.encrypt(KeyId=key, Plaintext=b"blue", EncryptionContext={"tenant": "blue"})["CiphertextBlob"]
    assert user_kms.decrypt(CiphertextBlob=blob, EncryptionContext={"tenant": "blue"})["Plaintext"] == b"blue"
    with expect_error("AccessDeniedException", 400):        # another tenant's context
        user_kms.encrypt(KeyId=key, Plaintext=b"red", EncryptionContext={"tenant": "red"})
    with expect_error("AccessDeniedException", 400):        # an extra context key the policy does not list
        user_kms.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"tenant": "blue", "other": "1"})
    with expect_error("AccessDeniedException", 400):        # no context: the StringEquals has nothing to match
        user_kms.encrypt(KeyId=key, Plaintext=b"x")


def test_caller_account_admits_the_named_accounts_only(server, kms, root):
    other, other_key = second_account(server)
    third, third_key = second_account(server)
    key = kms.create_key()["KeyMetadata"]["Arn"]
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=_policy(
        {"Effect": "Allow", "Principal": root, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
         "Condition": {"StringEquals": {"kms:CallerAccount": other}}}))
    other_kms = client_as(server, "kms", other_key)
    blob = other_kms.encrypt(KeyId=key, Plaintext=b"shared")["CiphertextBlob"]
    assert other_kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"shared"
    with expect_error("AccessDeniedException", 400):
        client_as(server, "kms", third_key).decrypt(CiphertextBlob=blob)
    assert third != other


def test_request_alias(server, kms, root):
    key = kms.create_key()["KeyMetadata"]["Arn"]
    alias = f"alias/{unique('ra')}"
    kms.create_alias(AliasName=alias, TargetKeyId=key)
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=_policy(
        {"Effect": "Allow", "Principal": root, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*",
         "Condition": {"StringNotEquals": {"kms:RequestAlias": alias}}}))
    assert kms.encrypt(KeyId=alias, Plaintext=b"x")["KeyId"] == key
    with expect_error("AccessDeniedException", 400):
        kms.encrypt(KeyId=key, Plaintext=b"x")


def test_via_service_lets_lambda_use_a_key_the_caller_cannot_use_directly(server, kms, root):
    """A key only Lambda may use for the caller: CreateGrant allowed via lambda.<region>.amazonaws.com
    for an AWS resource, nothing directly; attaching it as KMSKeyArn works, a direct Encrypt does not."""
    lam = server.client("lambda")
    key = kms.create_key()["KeyMetadata"]["Arn"]
    via = f"lambda.{server.region}.amazonaws.com"
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=_policy(
        {"Effect": "Allow", "Principal": root, "Resource": "*",
         "Action": ["kms:DescribeKey", "kms:GetKeyPolicy", "kms:PutKeyPolicy", "kms:ScheduleKeyDeletion"]},
        {"Effect": "Allow", "Principal": root, "Action": "kms:CreateGrant", "Resource": "*",
         "Condition": {"StringEquals": {"kms:ViaService": via}, "Bool": {"kms:GrantIsForAWSResource": "true"}}}))
    with expect_error("AccessDeniedException", 400):
        kms.encrypt(KeyId=key, Plaintext=b"x")
    name = unique("via")
    lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=ROLE,
                        Code={"ZipFile": default_zip()}, KMSKeyArn=key, Environment={"Variables": {"A": "1"}})
    try:
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
        assert lam.get_function_configuration(FunctionName=name)["KMSKeyArn"] == key
        # the same key policy without the ViaService grant: Lambda is refused for the caller
        kms.put_key_policy(KeyId=key, PolicyName="default", Policy=_policy(
            {"Effect": "Allow", "Principal": root, "Resource": "*",
             "Action": ["kms:DescribeKey", "kms:GetKeyPolicy", "kms:PutKeyPolicy", "kms:ScheduleKeyDeletion"]},
            {"Effect": "Allow", "Principal": root, "Action": "kms:CreateGrant", "Resource": "*",
             "Condition": {"StringEquals": {"kms:ViaService": "s3.amazonaws.com"}}}))
        with expect_error("KMSAccessDeniedException", 502):
            lam.create_function(FunctionName=unique("via"), Runtime="python3.11", Handler="app.handler", Role=ROLE,
                                Code={"ZipFile": default_zip()}, KMSKeyArn=key)
    finally:
        lam.delete_function(FunctionName=name)
        kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
