"""The platform is no confused deputy (issue 21.2): everything it does for a tenant in the background is
authorized as the tenant's role, at configuration time and again at delivery time. A user denied sqs:*
must not drain a protected queue through an event source mapping, nor write into it through a
destination or a schedule; a foreign, missing or untrusting role must not be accepted by the Scheduler.
Everything through boto3 against a real server."""
from __future__ import annotations

import json
import time

import pytest

from .e2e_support import ROLE, WAIT, default_zip, expect_error, unique
from .tenancy_support import (BASIC_EXECUTION, LAMBDA_TRUST, SCHEDULER_TRUST, SQS_QUEUE_EXECUTION, allow, client_as,
                              deny, destinations_role, eventually, make_role, make_user, role_name, second_account)


def _queue(sqs, prefix: str = "protected") -> tuple[str, str]:
    url = sqs.create_queue(QueueName=unique(prefix))["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _function(lam, role: str) -> str:
    name = unique("deputy")
    lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=role,
                        Code={"ZipFile": default_zip()})
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    return name


def _visible(sqs, url: str) -> int:
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                                               "ApproximateNumberOfMessagesNotVisible"])
    return int(a["Attributes"]["ApproximateNumberOfMessages"]) + int(
        a["Attributes"]["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture(scope="module")
def iam(server):
    return server.client("iam")


@pytest.fixture(scope="module")
def lam(server):
    return server.client("lambda")


@pytest.fixture(scope="module")
def sqs(server):
    return server.client("sqs")


@pytest.fixture(scope="module")
def no_sqs_user(server, iam):
    """lambda:* and iam:PassRole, and an explicit Deny on every SQS action."""
    _, key = make_user(iam, allow("lambda:*"), allow("iam:PassRole"), deny("sqs:*"))
    return client_as(server, "lambda", key), client_as(server, "sqs", key)


# ---------------------------------------------------------------- event source mappings

def test_mapping_needs_an_execution_role_that_may_read_the_queue(lam, sqs, no_sqs_user):
    user_lam, user_sqs = no_sqs_user
    url, arn = _queue(sqs)
    sqs.send_message(QueueUrl=url, MessageBody="secret")
    with expect_error({"AccessDenied", "AccessDeniedException"}, 403):
        user_sqs.receive_message(QueueUrl=url)
    weak = _function(lam, ROLE)          # lambda-role: logs only
    try:
        with expect_error("InvalidParameterValueException", 400) as err:
            user_lam.create_event_source_mapping(FunctionName=weak, EventSourceArn=arn)
        assert err.message == "The provided execution role does not have permissions to call ReceiveMessage on SQS"
        assert lam.list_event_source_mappings(FunctionName=weak)["EventSourceMappings"] == []
        time.sleep(3)
        assert _visible(sqs, url) == 1               # nothing drained it
    finally:
        lam.delete_function(FunctionName=weak)


def test_mapping_update_to_a_weaker_function_is_refused(lam, sqs, iam):
    _, arn = _queue(sqs)
    strong = _function(lam, make_role(iam, LAMBDA_TRUST, managed=(SQS_QUEUE_EXECUTION,)))
    weak = _function(lam, make_role(iam, LAMBDA_TRUST, allow(["sqs:ReceiveMessage", "sqs:GetQueueAttributes"])))
    try:
        uuid = lam.create_event_source_mapping(FunctionName=strong, EventSourceArn=arn, Enabled=False)["UUID"]
        with expect_error("InvalidParameterValueException", 400) as err:
            lam.update_event_source_mapping(UUID=uuid, FunctionName=weak)
        assert err.message == "The provided execution role does not have permissions to call DeleteMessage on SQS"
        lam.delete_event_source_mapping(UUID=uuid)
    finally:
        for fn in (strong, weak):
            lam.delete_function(FunctionName=fn)


def test_mapping_stops_reading_when_the_role_loses_the_permission(lam, sqs, iam):
    url, arn = _queue(sqs)
    role = make_role(iam, LAMBDA_TRUST, managed=(SQS_QUEUE_EXECUTION,))
    fn = _function(lam, role)
    uuid = lam.create_event_source_mapping(FunctionName=fn, EventSourceArn=arn, BatchSize=1)["UUID"]
    try:
        sqs.send_message(QueueUrl=url, MessageBody="one")
        assert eventually(lambda: _visible(sqs, url) == 0, 30), "the mapping never read its queue"
        iam.detach_role_policy(RoleName=role_name(role), PolicyArn=SQS_QUEUE_EXECUTION)
        got = eventually(lambda: lam.get_event_source_mapping(UUID=uuid)["LastProcessingResult"].startswith(
            "PROBLEM"), 15)
        assert got, lam.get_event_source_mapping(UUID=uuid)
        result = lam.get_event_source_mapping(UUID=uuid)["LastProcessingResult"]
        assert "execution role does not have permissions" in result
        sqs.send_message(QueueUrl=url, MessageBody="two")
        time.sleep(8)                                  # more than one poll and its back-off
        assert _visible(sqs, url) == 1                 # not read with the platform's own authority
        iam.attach_role_policy(RoleName=role_name(role), PolicyArn=SQS_QUEUE_EXECUTION)
        assert eventually(lambda: _visible(sqs, url) == 0, 30), "the mapping did not resume"
    finally:
        lam.delete_event_source_mapping(UUID=uuid)
        lam.delete_function(FunctionName=fn)


# ---------------------------------------------------------------- destinations

def test_destination_needs_the_execution_roles_permission(lam, sqs, no_sqs_user):
    user_lam, _ = no_sqs_user
    _, arn = _queue(sqs)
    weak = _function(lam, ROLE)
    target = _function(lam, ROLE)
    try:
        with expect_error("InvalidParameterValueException", 400) as err:
            user_lam.put_function_event_invoke_config(FunctionName=weak,
                                                      DestinationConfig={"OnSuccess": {"Destination": arn}})
        assert err.message == f"The function's execution role does not have permissions to call SendMessage on {arn}"
        fn_arn = lam.get_function(FunctionName=target)["Configuration"]["FunctionArn"]
        with expect_error("InvalidParameterValueException", 400) as err:
            lam.put_function_event_invoke_config(FunctionName=weak,
                                                 DestinationConfig={"OnFailure": {"Destination": fn_arn}})
        assert err.message == (f"The function's execution role does not have permissions to call InvokeFunction "
                               f"on {fn_arn}")
    finally:
        for fn in (weak, target):
            lam.delete_function(FunctionName=fn)


def test_destination_is_delivered_only_while_the_role_may_send(lam, sqs, iam):
    url, arn = _queue(sqs, "dest")
    role = destinations_role(iam)
    fn = _function(lam, role)
    try:
        lam.put_function_event_invoke_config(FunctionName=fn, DestinationConfig={"OnSuccess": {"Destination": arn}})
        iam.delete_role_policy(RoleName=role_name(role), PolicyName="p")        # SendMessage revoked
        lam.invoke(FunctionName=fn, InvocationType="Event", Payload=json.dumps({"n": "dropped"}).encode())
        time.sleep(6)
        assert _visible(sqs, url) == 0, "a record was delivered with the platform's authority"
        iam.put_role_policy(RoleName=role_name(role), PolicyName="p",
                            PolicyDocument=json.dumps({"Version": "2012-10-17",
                                                       "Statement": [allow("sqs:SendMessage", arn)]}))
        lam.invoke(FunctionName=fn, InvocationType="Event", Payload=json.dumps({"n": "sent"}).encode())
        got = eventually(lambda: sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages"), 30)
        assert got and json.loads(got[0]["Body"])["requestPayload"] == {"n": "sent"}
    finally:
        lam.delete_function(FunctionName=fn)


# ---------------------------------------------------------------- schedules

def test_schedule_role_must_exist_be_ours_trust_the_scheduler_and_be_passable(server, lam, iam):
    sch = server.client("scheduler")
    fn = _function(lam, ROLE)
    fn_arn = server.function_arn(fn)
    ftw = {"Mode": "OFF"}
    foreign_account, foreign_key = second_account(server)
    foreign_role = make_role(client_as(server, "iam", foreign_key), SCHEDULER_TRUST, allow("lambda:InvokeFunction"))
    lambda_only = make_role(iam, LAMBDA_TRUST, allow("lambda:InvokeFunction"))
    good = make_role(iam, SCHEDULER_TRUST, allow("lambda:InvokeFunction"))
    try:
        for bad in (f"arn:aws:iam::{server.account_id}:role/{unique('missing')}", foreign_role, lambda_only):
            with expect_error("ValidationException", 400) as err:
                sch.create_schedule(Name=unique("s"), ScheduleExpression="rate(5 minutes)", FlexibleTimeWindow=ftw,
                                    Target={"Arn": fn_arn, "RoleArn": bad})
            assert err.message == "The execution role you provide must allow AWS EventBridge Scheduler to assume the role."
        assert foreign_account in foreign_role
        _, key = make_user(iam, allow("scheduler:*"))             # no iam:PassRole
        with expect_error("AccessDeniedException", 403) as err:
            client_as(server, "scheduler", key).create_schedule(
                Name=unique("s"), ScheduleExpression="rate(5 minutes)", FlexibleTimeWindow=ftw,
                Target={"Arn": fn_arn, "RoleArn": good})
        assert "iam:PassRole" in err.message
        name = unique("s")
        sch.create_schedule(Name=name, ScheduleExpression="rate(5 minutes)", FlexibleTimeWindow=ftw,
                            Target={"Arn": fn_arn, "RoleArn": good})
        with expect_error("ValidationException", 400):
            sch.update_schedule(Name=name, ScheduleExpression="rate(5 minutes)", FlexibleTimeWindow=ftw,
                                Target={"Arn": fn_arn, "RoleArn": lambda_only})
        sch.delete_schedule(Name=name)
    finally:
        lam.delete_function(FunctionName=fn)


def test_schedule_fires_with_its_roles_authority_only(lambdalet_server_factory):
    srv = lambdalet_server_factory("--schedule-test-seconds")
    lam, sqs, iam, sch = srv.client("lambda"), srv.client("sqs"), srv.client("iam"), srv.client("scheduler")
    out_url, out_arn = _queue(sqs, "ran")
    fn = _function(lam, destinations_role(iam))
    lam.put_function_event_invoke_config(FunctionName=fn, DestinationConfig={"OnSuccess": {"Destination": out_arn}})
    dlq_url, dlq_arn = _queue(sqs, "sched-dlq")
    # may write the dead-letter queue, may NOT invoke the function
    role = make_role(iam, SCHEDULER_TRUST, allow("sqs:SendMessage", dlq_arn))
    name = unique("nope")
    sch.create_schedule(Name=name, ScheduleExpression="rate(2 seconds)", FlexibleTimeWindow={"Mode": "OFF"},
                        Target={"Arn": srv.function_arn(fn), "RoleArn": role, "DeadLetterConfig": {"Arn": dlq_arn}})
    got = eventually(lambda: sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1,
                                                 MessageAttributeNames=["All"]).get("Messages"), 20)
    assert got, "the failed occurrence never reached the dead-letter queue"
    attrs = got[0]["MessageAttributes"]
    assert attrs["ERROR_CODE"]["StringValue"] == "AccessDeniedException"
    assert "lambda:InvokeFunction" in attrs["ERROR_MESSAGE"]["StringValue"]
    assert _visible(sqs, out_url) == 0, "the function ran although the schedule's role may not invoke it"
    # neither permission: nothing reaches the dead-letter queue either
    iam.delete_role_policy(RoleName=role_name(role), PolicyName="p")
    time.sleep(1)
    sqs.purge_queue(QueueUrl=dlq_url)
    time.sleep(5)
    assert _visible(sqs, dlq_url) == 0, "a dead-letter message was written with the platform's authority"
    assert _visible(sqs, out_url) == 0
    # given lambda:InvokeFunction, the same schedule runs the function
    iam.put_role_policy(RoleName=role_name(role), PolicyName="p",
                        PolicyDocument=json.dumps({"Version": "2012-10-17",
                                                   "Statement": [allow("lambda:InvokeFunction")]}))
    assert eventually(lambda: _visible(sqs, out_url) > 0, 30), "the schedule did not run once allowed"
    sch.delete_schedule(Name=name)
    assert BASIC_EXECUTION
