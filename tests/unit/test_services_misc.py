"""services/: tags, reserved concurrency, account settings, the data-plane resolver, runtimes, names."""
from __future__ import annotations

import datetime as dt
from dataclasses import FrozenInstanceError, replace

import pytest

from lambdalet.config import Settings
from lambdalet.models.errors import (ValidationException, AccessDeniedException, InvalidParameterValueException,
                                     ResourceNotFoundException)
from lambdalet.services.arns import FunctionRef, Scope, parse_function_ref
from lambdalet.services.runtimes import RuntimeCatalogue, default_catalogue
from .services_support import ACCOUNT, OTHER_ACCOUNT, REGION, build_env, make_zip

ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:"


# ---------------- tags ----------------

def test_tag_untag_list(env):
    env.create("fn", Tags={"a": "1"})
    env.call("tag_resource", Resource=ARN + "fn", Tags={"b": "2", "a": "one"})
    assert env.call("list_tags", Resource=ARN + "fn") == {"Tags": {"a": "one", "b": "2"}}
    env.call("untag_resource", Resource=ARN + "fn", TagKeys=["a", "missing"])
    assert env.call("list_tags", Resource=ARN + "fn") == {"Tags": {"b": "2"}}
    assert env.call("get_function", FunctionName="fn")["Tags"] == {"b": "2"}


def test_tag_errors(env):
    env.create("fn", Tags={f"k{i}": "v" for i in range(49)})
    with pytest.raises(InvalidParameterValueException, match="tag limit"):
        env.call("tag_resource", Resource=ARN + "fn", Tags={"x": "1", "y": "2"})
    env.call("tag_resource", Resource=ARN + "fn", Tags={"k1": "replaced", "x": "1"})   # 50 exactly
    with pytest.raises(InvalidParameterValueException, match="versions are not supported"):
        env.call("tag_resource", Resource=ARN + "fn:1", Tags={"x": "1"})
    # Constraint failures are AWS's ValidationException (its request layer's), not the service's code.
    with pytest.raises(ValidationException, match="at 'resource'"):
        env.call("tag_resource", Resource="fn", Tags={"x": "1"})
    with pytest.raises(ValidationException):
        env.call("tag_resource", Resource=ARN + "fn", Tags={"k" * 129: "1"})
    with pytest.raises(ValidationException):
        env.call("tag_resource", Resource=ARN + "fn", Tags={"x": "v" * 257})
    with pytest.raises(ValidationException):
        env.call("tag_resource", Resource=ARN + "fn", Tags={"bad*key": "v"})
    with pytest.raises(ResourceNotFoundException):
        env.call("list_tags", Resource=ARN + "nope")
    with pytest.raises(AccessDeniedException):
        env.call("list_tags", Resource=f"arn:aws:lambda:{REGION}:{OTHER_ACCOUNT}:function:fn")


def test_tag_values_allow_unicode_letters_and_spaces(env):
    env.create("fn")
    env.call("tag_resource", Resource=ARN + "fn", Tags={"Équipe": "données clients", "path": "/a/b=c+d@e:f"})
    assert env.call("list_tags", Resource=ARN + "fn")["Tags"]["Équipe"] == "données clients"


# ---------------- concurrency and account ----------------

def test_reserved_concurrency(env):
    env.create("a")
    env.create("b")
    assert env.call("get_function_concurrency", FunctionName="a") == {}
    assert env.call("put_function_concurrency", FunctionName="a", ReservedConcurrentExecutions=800) == \
        {"ReservedConcurrentExecutions": 800}
    assert env.call("get_function", FunctionName="a")["Concurrency"] == {"ReservedConcurrentExecutions": 800}
    with pytest.raises(InvalidParameterValueException, match=r"below its minimum value of \[100\]"):
        env.call("put_function_concurrency", FunctionName="b", ReservedConcurrentExecutions=101)
    env.call("put_function_concurrency", FunctionName="b", ReservedConcurrentExecutions=100)
    # Changing a's own reservation does not count its old value against it.
    env.call("put_function_concurrency", FunctionName="a", ReservedConcurrentExecutions=800)
    settings = env.call("get_account_settings")
    assert settings["AccountLimit"]["UnreservedConcurrentExecutions"] == 100
    env.call("delete_function_concurrency", FunctionName="a")
    assert env.call("get_function_concurrency", FunctionName="a") == {}
    assert env.call("get_account_settings")["AccountLimit"]["UnreservedConcurrentExecutions"] == 900
    for bad in (-1, None, "5"):
        with pytest.raises(ValidationException):
            env.call("put_function_concurrency", FunctionName="a", ReservedConcurrentExecutions=bad)
    with pytest.raises(InvalidParameterValueException):
        env.call("put_function_concurrency", FunctionName="a:1", ReservedConcurrentExecutions=1)


def test_concurrency_limit_comes_from_settings(tmp_path):
    e = build_env(tmp_path, replace(Settings(data_dir=tmp_path), concurrent_executions_limit=5000))
    e.create("fn")
    e.call("put_function_concurrency", FunctionName="fn", ReservedConcurrentExecutions=4900)
    limit = e.call("get_account_settings")["AccountLimit"]
    assert limit["ConcurrentExecutions"] == 5000 and limit["UnreservedConcurrentExecutions"] == 100


def test_account_settings(env):
    empty = env.call("get_account_settings")
    assert empty["AccountLimit"] == {"TotalCodeSize": 80530636800, "CodeSizeUnzipped": 262144000,
                                     "CodeSizeZipped": 52428800, "ConcurrentExecutions": 1000,
                                     "UnreservedConcurrentExecutions": 1000}
    assert empty["AccountUsage"] == {"TotalCodeSize": 0, "FunctionCount": 0}
    a = env.create("a")
    env.call("publish_version", FunctionName="a")
    b = env.create("b", Code={"ZipFile": make_zip({"other.py": "x"})})
    usage = env.call("get_account_settings")["AccountUsage"]
    assert usage == {"TotalCodeSize": 2 * a["CodeSize"] + b["CodeSize"], "FunctionCount": 2}


# ---------------- data-plane resolver ----------------

def test_resolve_version(env):
    env.create("fn", Environment={"Variables": {"K": "v1"}}, MemorySize=512, Timeout=20)
    env.call("publish_version", FunctionName="fn")
    env.call("update_function_configuration", FunctionName="fn", Environment={"Variables": {"K": "v2"}})
    env.call("publish_version", FunctionName="fn")
    env.call("create_alias", FunctionName="fn", Name="live", FunctionVersion="1",
             RoutingConfig={"AdditionalVersionWeights": {"2": 0.3}})
    latest = env.svc.resolve_version(ACCOUNT, "fn")
    assert latest.version == "$LATEST" and dict(latest.environment) == {"K": "v2"} and latest.routing is None
    v1 = env.svc.resolve_version(ACCOUNT, ARN + "fn:1")
    assert (v1.version, v1.memory_size, v1.timeout, v1.handler, v1.runtime) == ("1", 512, 20, "app.handler", "python3.12")
    assert dict(v1.environment) == {"K": "v1"} and v1.version_arn == ARN + "fn:1"
    assert v1.code_sha256 == env.call("get_function_configuration", FunctionName="fn")["CodeSha256"]
    via_alias = env.svc.resolve_version(ACCOUNT, "fn", "live")
    assert via_alias.version == "1" and via_alias.routing.additional_version == "2"
    assert via_alias.routing.pick(0.1) == "2" and via_alias.routing.pick(0.5) == "1"
    with pytest.raises(FrozenInstanceError):
        v1.version = "2"
    with pytest.raises(TypeError):
        v1.environment["K"] = "x"
    with pytest.raises(ResourceNotFoundException):
        env.svc.resolve_version(ACCOUNT, "fn", "9")
    with pytest.raises(ResourceNotFoundException):
        env.svc.resolve_version(OTHER_ACCOUNT, "fn")


# ---------------- runtimes ----------------

def test_runtime_catalogue_dates():
    cat = default_catalogue()
    today = dt.date(2026, 11, 27)
    assert cat.check("python3.12", creating=True, today=today).family == "python"
    for old in ("python2.7", "nodejs12.x", "go1.x"):
        with pytest.raises(InvalidParameterValueException, match=f"{old} is no longer supported"):
            cat.check(old, creating=True, today=today)
    with pytest.raises(InvalidParameterValueException, match="enum value set"):
        cat.check("cobol1.0", creating=True, today=today)
    # A runtime blocked for creation can still be kept by updates until its block_update_date.
    rt = cat.get("python3.10")
    assert rt.blocked_for_create(dt.date(2026, 8, 1)) and not rt.blocked_for_update(dt.date(2026, 8, 1))
    assert every_family_has_a_supported_runtime(cat, today)


def every_family_has_a_supported_runtime(cat: RuntimeCatalogue, today) -> bool:
    families = {cat.get(i).family for i in cat.identifiers()}
    return all(any(not cat.get(i).blocked_for_create(today) and cat.get(i).family == f for i in cat.identifiers())
               for f in families - {"go"})


def test_runtime_catalogue_covers_botocore_enum():
    import botocore.session
    enum = botocore.session.get_session().get_service_model("lambda").shape_for("Runtime").enum
    known = set(default_catalogue().identifiers())
    # Everything lambdalet lists is a real Lambda runtime identifier.
    assert known <= set(enum)


# ---------------- names ----------------

SCOPE = Scope(ACCOUNT, REGION)


@pytest.mark.parametrize("text, ref", [
    ("fn", FunctionRef("fn")),
    ("fn:live", FunctionRef("fn", "live")),
    ("fn:$LATEST", FunctionRef("fn", "$LATEST")),
    (f"{ACCOUNT}:function:fn", FunctionRef("fn")),
    (f"{ACCOUNT}:function:fn:3", FunctionRef("fn", "3")),
    (ARN + "fn", FunctionRef("fn")),
    (ARN + "fn:7", FunctionRef("fn", "7")),
])
def test_parse_function_ref(text, ref):
    assert parse_function_ref(SCOPE, text) == ref


@pytest.mark.parametrize("text", ["", "bad name", "fn:", "fn:a:b", "arn:aws:s3:::bucket", "x" * 141, None])
def test_parse_function_ref_refuses(text):
    with pytest.raises(ValidationException, match="at 'functionName'"):
        parse_function_ref(SCOPE, text, action="CreateFunction")


def test_create_refuses_a_long_name_as_aws_does():
    """Recorded from AWS: CreateFunction's 64-character check is the service's own (InvalidParameterValueException)."""
    with pytest.raises(InvalidParameterValueException) as err:
        parse_function_ref(SCOPE, "a" * 65, action="CreateFunction")
    assert err.value.message == ("1 validation error detected: Value '" + "a" * 65 + "' at 'functionName' failed to "
                                 "satisfy constraint: Member must have length less than or equal to 64")


@pytest.mark.parametrize("text", ["bad name", "a" * 65, "fn:", "fn:a:b", "arn:aws:s3:::bucket", "x" * 141])
def test_a_name_that_cannot_exist_is_not_found(text):
    """Outside CreateFunction AWS answers a name no function can have (over 64 characters, ...) as
    missing, not as invalid."""
    with pytest.raises(ResourceNotFoundException, match="Function not found: arn:aws:lambda:"):
        parse_function_ref(SCOPE, text, action="GetFunction")
