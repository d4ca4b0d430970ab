"""Lambda answers as AWS answers: a corpus of request -> expected response, run against a real server.

The cases live in lambda_cases.json (our own, written from AWS's documented behaviour, botocore's
model and responses recorded against AWS that peers publish). Each case is one or more steps; a step
is an operation with its parameters and what AWS answers: the HTTP status, for an error its code,
its exact message and the error body's own members (AWS's fields only), for a success the members
that must be there (volatile ones masked) and those that must not.

Placeholders in parameters and expectations: {fn} (a function with versions 1 and 2 and an alias
`live` -> 1, shared by the module), {layer} (a layer with versions 1 and 2), {fresh} (a function made for this case alone), {new} (a name no
function has; deleted after the case), {missing}, {region}, {account}, {zip}/{badzip} (code),
{bigpayload} (an Invoke payload over 6 MB).
Matchers in expectations: "<any>", "<uuid>", "<date>", "<regex:...>", "<same:N.Member>" and
"<differs:N.Member>" (the value of Member in step N's response).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from integration.e2e_support import WAIT, create_function, default_zip, delete_quietly, unique

CASES = json.loads((Path(__file__).with_name("lambda_cases.json")).read_text())
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(\+0000|Z|[+-]\d{2}:\d{2})?")


@pytest.fixture(scope="module")
def lam(server):
    # No client-side validation: the server's own answers are what is checked (raw clients send anything).
    return server.client("lambda", config=Config(retries={"max_attempts": 0}, parameter_validation=False))


@pytest.fixture(scope="module")
def world(lam, server):
    name = unique("corpus")
    create_function(lam, name, Environment={"Variables": {}})
    lam.publish_version(FunctionName=name)
    lam.update_function_configuration(FunctionName=name, Timeout=4)     # a change that makes a new version
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    layer = unique("corpus-layer")
    for _ in range(2):                     # versions 1 and 2
        lam.publish_layer_version(LayerName=layer, Content={"ZipFile": default_zip()})
    yield {"fn": name, "layer": layer, "region": server.region, "account": server.account_id,
           "missing": unique("doesnotexist")}
    delete_quietly(lam, name)
    for version in (1, 2):
        lam.delete_layer_version(LayerName=layer, VersionNumber=version)


def _fill(value, names: dict):
    if isinstance(value, str):
        if value == "{zip}":
            return default_zip()
        if value == "{badzip}":
            return b"this is not a zip"
        if value == "{bigpayload}":         # one byte over Invoke's 6 MB
            return b'"' + b"x" * (6 * 1024 * 1024 - 1) + b'"'

        for key, text in names.items():
            value = value.replace("{" + key + "}", text)
        return value
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    return value


def _lookup(responses: list[dict], ref: str):
    step, _, path = ref.partition(".")
    value = responses[int(step)]
    for part in path.split("."):
        value = value[part]
    return value


def _refer(params: dict, responses: list[dict]) -> dict:
    """A parameter "<same:N.Member>" takes the value of Member in step N's response."""
    return {k: _lookup(responses, v[6:-1]) if isinstance(v, str) and v.startswith("<same:") else v
            for k, v in params.items()}


def _matches(expected, actual, responses: list[dict], where: str) -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        for key, want in expected.items():
            assert key in actual, f"{where}.{key} missing in {sorted(actual)}"
            _matches(want, actual[key], responses, f"{where}.{key}")
        return
    if isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual!r}"
        for i, (want, got) in enumerate(zip(expected, actual)):
            _matches(want, got, responses, f"{where}[{i}]")
        return
    if isinstance(expected, str) and expected.startswith("<") and expected.endswith(">"):
        kind, _, arg = expected[1:-1].partition(":")
        if kind == "any":
            return
        if kind == "uuid":
            assert isinstance(actual, str) and UUID.fullmatch(actual), f"{where}: {actual!r} is not a uuid"
            return
        if kind == "date":
            assert isinstance(actual, str) and DATE.fullmatch(actual) or hasattr(actual, "year"), \
                f"{where}: {actual!r} is not a date"
            return
        if kind == "regex":
            assert isinstance(actual, str) and re.fullmatch(arg, actual), f"{where}: {actual!r} !~ {arg}"
            return
        if kind == "same":
            assert actual == _lookup(responses, arg), f"{where}: {actual!r} differs from step {arg}"
            return
        if kind == "differs":
            assert actual != _lookup(responses, arg), f"{where}: {actual!r} equals step {arg}"
            return
    assert actual == expected, f"{where}: expected {expected!r}, got {actual!r}"


def _call(lam, op: str, params: dict) -> tuple[int, dict, ClientError | None]:
    if op.startswith("wait:"):
        lam.get_waiter(op[5:]).wait(**params, WaiterConfig=WAIT)
        return 200, {}, None
    try:
        out = getattr(lam, op)(**params)
        return out["ResponseMetadata"]["HTTPStatusCode"], out, None
    except ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response, e


def _check(step: dict, status: int, out: dict, err: ClientError | None, responses: list[dict], names: dict) -> None:
    expect = _fill(step.get("expect", {}), names)
    where = step["op"]
    if "status" in expect:
        detail = f" ({err.response['Error']})" if err is not None else ""
        assert status == expect["status"], f"{where}: status {status}{detail}"
    if "code" in expect:
        assert err is not None, f"{where}: expected {expect['code']}, got success {out}"
        assert err.response["Error"]["Code"] == expect["code"], f"{where}: {err.response['Error']}"
    elif err is not None:
        raise AssertionError(f"{where}: unexpected {err.response['Error']}")
    if "message" in expect:
        assert err.response["Error"]["Message"] == expect["message"]
    if "message_regex" in expect:
        assert re.fullmatch(expect["message_regex"], err.response["Error"]["Message"], re.S), \
            err.response["Error"]["Message"]
    if "error_fields" in expect:    # AWS's error body members besides the code (boto3 shows modelled ones)
        fields = sorted(k for k in out if k not in ("Error", "ResponseMetadata"))
        assert fields == sorted(expect["error_fields"]), f"{where}: error body members {fields}"
    if "body" in expect:
        _matches(expect["body"], out, responses, where)
    for key in expect.get("absent", []):
        target = out
        *path, last = key.split(".")
        for part in path:
            target = target[int(part)] if isinstance(target, list) else target.get(part, {})
        assert last not in target, f"{where}: {key} present: {target.get(last)!r}"


@pytest.mark.parametrize("case", CASES, ids=[f"{c['category']}/{c['id']}" for c in CASES])
def test_lambda_answers_as_aws(case, lam, world):
    names = dict(world, new=unique("corpus-new"))
    made = [names["new"]]
    try:
        if case.get("fresh"):
            names["fresh"] = unique("corpus-fresh")
            made.append(names["fresh"])
            create_function(lam, names["fresh"], **_fill(case.get("fresh_params", {}), names))
        responses: list[dict] = []
        for step in case["steps"]:
            params = _refer(_fill(step.get("params", {}), names), responses)
            status, out, err = _call(lam, step["op"], params)
            responses.append(out)
            _check(step, status, out, err, responses, names)
    finally:
        for name in made:
            delete_quietly(lam, name)


def test_every_case_names_its_source():
    """Each expectation says where it comes from (a recording against AWS, AWS's documentation, the model)."""
    for case in CASES:
        assert case.get("source"), case["id"]
    assert len({c["id"] for c in CASES}) == len(CASES)
