"""Tenant isolation mode (TenancyConfig PER_TENANT), as AWS documents it ("Tenant isolation"), through a
real server with boto3:

- CreateFunction takes TenancyConfig and GetFunctionConfiguration shows it;
- Invoke of such a function requires TenantId, Invoke of any other refuses it: AWS's
  InvalidParameterValueException and words, both ways;
- environments are never shared between tenants: a function that remembers what it ran in memory and in
  /tmp sees only its own tenant's invocations (the same tenant's invocations do reuse a warm one);
- the tenant id reaches context.tenant_id (Lambda-Runtime-Aws-Tenant-Id) and the JSON logs (tenantId
  on application records and on platform.start / platform.report's record);
- an Event invocation keeps its tenant; AWS's cap of 2,500 tenant environments per 1,000 of the
  function's concurrency answers 429; function URLs are refused for such a function.
"""
from __future__ import annotations

import base64
import json
import os
import time

import pytest
from botocore.exceptions import ClientError

from .e2e_support import ROLE, WAIT, delete_quietly, make_zip, unique

MISMATCH = "Tenant ID configuration not specified or passed to a function when tenant isolation is not enabled."
PER_TENANT = {"TenantIsolationMode": "PER_TENANT"}

# Remembers, per environment, every tenant it served: in memory and in a file in /tmp.
CODE = """\
import json, logging, os, uuid

ENV_ID = uuid.uuid4().hex
SERVED = []
TMP = "/tmp/served-tenants"

def handler(event, context):
    SERVED.append(context.tenant_id)
    with open(TMP, "a") as f:
        f.write(context.tenant_id + "\\n")
    with open(TMP) as f:
        on_disk = f.read().split()
    logging.getLogger().info("serving " + str(event.get("m")))
    return {"env": ENV_ID, "tenant": context.tenant_id, "memory": SERVED, "tmp": on_disk, "m": event.get("m")}
"""


@pytest.fixture(scope="module")
def lam(function_server):
    return function_server.client()


@pytest.fixture
def made(lam):
    names: list[str] = []
    yield names
    for name in names:
        delete_quietly(lam, name)


def _create(lam, made, **kw) -> str:
    name = unique("tenant")
    lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=ROLE,
                        Code={"ZipFile": make_zip({"app.py": CODE})}, Timeout=10, **kw)
    made.append(name)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    return name


def _invoke(lam, name, tenant, m="x", **kw):
    resp = lam.invoke(FunctionName=name, TenantId=tenant, Payload=json.dumps({"m": m}).encode(), **kw)
    body = json.loads(resp["Payload"].read())
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp, body
    return body, resp


def _error(call):
    with pytest.raises(ClientError) as info:
        call()
    err = info.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Message"]


def test_tenancy_config_is_shown_and_tenant_id_is_required_both_ways(lam, made):
    isolated = _create(lam, made, TenancyConfig=PER_TENANT)
    plain = _create(lam, made)
    assert lam.get_function_configuration(FunctionName=isolated)["TenancyConfig"] == PER_TENANT
    assert lam.get_function(FunctionName=isolated)["Configuration"]["TenancyConfig"] == PER_TENANT
    assert "TenancyConfig" not in lam.get_function_configuration(FunctionName=plain)

    assert _error(lambda: lam.invoke(FunctionName=isolated, Payload=b"{}")) == \
        ("InvalidParameterValueException", 400, MISMATCH)
    assert _error(lambda: lam.invoke(FunctionName=isolated, Payload=b"{}", InvocationType="Event")) == \
        ("InvalidParameterValueException", 400, MISMATCH)
    assert _error(lambda: lam.invoke(FunctionName=plain, TenantId="blue", Payload=b"{}")) == \
        ("InvalidParameterValueException", 400, MISMATCH)
    code, status, _ = _error(lambda: lam.invoke(FunctionName=isolated, TenantId="bad#id", Payload=b"{}"))
    assert (code, status) == ("ValidationException", 400)        # the model's pattern for TenantId

    # AWS refuses function URLs for such a function (a URL cannot name a tenant).
    code, status, _ = _error(lambda: lam.create_function_url_config(FunctionName=isolated, AuthType="AWS_IAM"))
    assert (code, status) == ("InvalidParameterValueException", 400)


def test_environments_are_never_shared_between_tenants(lam, made):
    name = _create(lam, made, TenancyConfig=PER_TENANT)
    blue1, _ = _invoke(lam, name, "blue")
    green1, _ = _invoke(lam, name, "green")
    blue2, _ = _invoke(lam, name, "blue")
    green2, _ = _invoke(lam, name, "green")
    assert blue1["tenant"] == "blue" and green1["tenant"] == "green"
    # Each tenant's warm environment is reused by that tenant, and only by it.
    assert blue1["env"] == blue2["env"] and green1["env"] == green2["env"]
    assert blue1["env"] != green1["env"]
    assert blue2["memory"] == ["blue", "blue"] and green2["memory"] == ["green", "green"]
    if os.geteuid() == 0:      # the namespace sandbox: each environment has a private /tmp
        assert blue2["tmp"] == ["blue", "blue"] and green2["tmp"] == ["green", "green"]


def test_tenant_id_in_the_json_logs(lam, made):
    name = _create(lam, made, TenancyConfig=PER_TENANT, LoggingConfig={"LogFormat": "JSON"})
    _, resp = _invoke(lam, name, "acme:eu-1", m="logged", LogType="Tail")
    records = []
    for line in base64.b64decode(resp["LogResult"]).decode().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    app = [r for r in records if r.get("message") == "serving logged"]
    assert app and app[0]["tenantId"] == "acme:eu-1", records
    platform = {r["type"]: r["record"] for r in records if str(r.get("type", "")).startswith("platform.")}
    assert platform["platform.start"]["tenantId"] == "acme:eu-1", records
    assert platform["platform.report"]["tenantId"] == "acme:eu-1", records


def test_an_event_invocation_keeps_its_tenant(lam, made):
    name = _create(lam, made, TenancyConfig=PER_TENANT)
    assert lam.invoke(FunctionName=name, TenantId="violet", InvocationType="Event",
                      Payload=json.dumps({"m": "async"}).encode())["StatusCode"] == 202
    # Once the event ran, violet's warm environment remembers it; no other tenant's does.
    deadline = time.monotonic() + 15
    while True:
        body, _ = _invoke(lam, name, "violet", m="sync")
        if body["memory"].count("violet") >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert body["memory"].count("violet") >= 2, body
    other, _ = _invoke(lam, name, "indigo")
    assert other["memory"] == ["indigo"]


def test_tenant_environments_are_capped_per_function_concurrency(lam, made):
    name = _create(lam, made, TenancyConfig=PER_TENANT)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    # 2,500 environments per 1,000 of concurrency: a reservation of 1 allows 2 tenants' environments.
    _invoke(lam, name, "t1")
    _invoke(lam, name, "t2")
    code, status, _ = _error(lambda: lam.invoke(FunctionName=name, TenantId="t3", Payload=b"{}"))
    assert (code, status) == ("TooManyRequestsException", 429)
    assert _invoke(lam, name, "t1")[0]["tenant"] == "t1"      # a tenant with an environment still runs
