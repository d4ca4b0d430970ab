"""Helpers for tests that need a second account, a restricted user or a role of their own (the
confused-deputy and KMS condition-key tests): real IAM calls through boto3, except the second account,
which is made the way an operator does it (Directory.create_account + an administrator key)."""
from __future__ import annotations

from polling import eventually  # noqa: F401  (the one poll helper, for this module's users)

import json

from lambdalet.config import Settings
from lambdalet.iam import IdentityStore
from lambdalet.iam.directory import Directory
from lambdalet.server.platform import open_keyring
from lambdalet.store.db import open_database

from .e2e_support import unique

LAMBDA_TRUST = {"Service": "lambda.amazonaws.com"}
SCHEDULER_TRUST = {"Service": "scheduler.amazonaws.com"}


def doc(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action, resource="*", **extra) -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action, resource="*", **extra) -> dict:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def second_account(server, name: str | None = None) -> tuple[str, dict]:
    """(account id, administrator key) of a new account on this server's data dir."""
    settings = Settings(data_dir=server.data_dir)
    db = open_database(settings.db_url)
    try:
        account = Directory(db).create_account(name or unique("tenant"))
        creds = IdentityStore(db, open_keyring(settings)).create_access_key(account, "admin", administrator=True)
    finally:
        db.close()
    return account, {"AccessKeyId": creds.access_key_id, "SecretAccessKey": creds.secret_access_key}


def client_as(server, service: str, key: dict):
    return server.client(service, aws_access_key_id=key["AccessKeyId"],
                         aws_secret_access_key=key["SecretAccessKey"])


def make_user(iam, *statements: dict) -> tuple[str, dict]:
    """A user with an inline policy of `statements` (none: no permission at all) and its access key."""
    name = unique("user")
    iam.create_user(UserName=name)
    if statements:
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=doc(*statements))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return name, key


def make_role(iam, trust: dict, *statements: dict, managed: tuple[str, ...] = ()) -> str:
    """A role trusting `trust` (a Principal value), with an inline policy of `statements`; its ARN."""
    name = unique("role")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=doc(
        {"Effect": "Allow", "Principal": trust, "Action": "sts:AssumeRole"}))["Role"]["Arn"]
    if statements:
        iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=doc(*statements))
    for policy in managed:
        iam.attach_role_policy(RoleName=name, PolicyArn=policy)
    return arn


def role_name(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


# ---- the roles AWS asks for, as a tenant would make them (used by the event tests too)
BASIC_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
SQS_QUEUE_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole"


def mapping_role(iam) -> str:
    """An execution role an SQS event source mapping accepts (AWSLambdaSQSQueueExecutionRole)."""
    return make_role(iam, LAMBDA_TRUST, managed=(SQS_QUEUE_EXECUTION,))


def destinations_role(iam) -> str:
    """An execution role that may send destination records and dead-letter messages anywhere."""
    return make_role(iam, LAMBDA_TRUST, allow(["sqs:SendMessage", "lambda:InvokeFunction"]),
                     managed=(BASIC_EXECUTION,))


def scheduler_role(iam) -> str:
    """A Scheduler execution role: invokes functions, writes dead-letter queues."""
    return make_role(iam, SCHEDULER_TRUST, allow(["lambda:InvokeFunction", "sqs:SendMessage"]))
