"""services/: functions — create/get/list/update/delete, validation, code handling, secrets at rest."""
from __future__ import annotations

import base64
import hashlib
import sqlite3

import pytest

from lambdalet.models.errors import (ValidationException, AccessDeniedException, InvalidParameterValueException,
                                     PreconditionFailedException, RequestEntityTooLargeException,
                                     ResourceConflictException, ResourceNotFoundException)
from .services_support import ACCOUNT, OTHER_ACCOUNT, REGION, ROLE, blob_files, make_ctx, make_zip

ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:"



# AWS answers a member that breaks its model constraint with ValidationException ("N validation
# error(s) detected: ..."), and the service's own checks with InvalidParameterValueException.
PARAM_ERRORS = (InvalidParameterValueException, ValidationException)


def assert_aws_kind(err) -> None:
    if isinstance(err, ValidationException):
        assert "validation error detected" in err.message, repr(err)
    else:   # one recorded exception: CreateFunction's own 64-character name check words it so, as IPV
        assert "validation error detected" not in err.message or "at 'functionName'" in err.message, repr(err)

def b64sha(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _count_rows(env, table: str) -> int:
    with sqlite3.connect(env.data_dir / "state.db") as c:
        return c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


# ---------------- create / get ----------------

def test_create_returns_full_configuration(env):
    data = make_zip()
    out = env.create("fn", Code={"ZipFile": data}, MemorySize=256, Timeout=10, Description="d",
                     Environment={"Variables": {"A": "1"}}, wait=False)
    assert out["FunctionName"] == "fn" and out["FunctionArn"] == ARN + "fn"
    assert (out["Runtime"], out["Handler"], out["Role"]) == ("python3.12", "app.handler", ROLE)
    assert (out["MemorySize"], out["Timeout"], out["Description"]) == (256, 10, "d")
    assert out["CodeSha256"] == b64sha(data) and out["CodeSize"] == len(data)
    # AWS answers a new function as Pending (with why) and no update status yet.
    assert out["Version"] == "$LATEST" and out["State"] == "Pending" and "LastUpdateStatus" not in out
    assert (out["StateReason"], out["StateReasonCode"]) == ("The function is being created.", "Creating")
    assert out["RuntimeVersionConfig"]["RuntimeVersionArn"].startswith("arn:aws:lambda:us-east-1::runtime:")
    assert out["Environment"] == {"Variables": {"A": "1"}}
    assert out["PackageType"] == "Zip" and out["Architectures"] == ["x86_64"]
    assert out["EphemeralStorage"] == {"Size": 512} and out["TracingConfig"] == {"Mode": "PassThrough"}
    assert out["SnapStart"] == {"ApplyOn": "None", "OptimizationStatus": "Off"}
    assert out["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": "/aws/lambda/fn"}
    assert out["LastModified"] == "2026-11-18T11:06:40.000+0000"   # the test clock, 1795000000
    assert len(out["RevisionId"]) == 36
    # The next read finds it Active, with a new RevisionId: the transition is a revision of its own.
    got = env.call("get_function_configuration", FunctionName="fn")
    assert (got["State"], got["LastUpdateStatus"]) == ("Active", "Successful") and "StateReason" not in got
    assert got["RevisionId"] != out["RevisionId"]


def test_updates_answer_in_progress_then_successful(env):
    env.create("fn")
    before = env.call("get_function_configuration", FunctionName="fn")
    out = env.call("update_function_configuration", FunctionName="fn", Description="x")
    assert (out["State"], out["LastUpdateStatus"]) == ("Active", "InProgress")
    assert (out["LastUpdateStatusReason"], out["LastUpdateStatusReasonCode"]) == ("The function is being created.",
                                                                                  "Creating")
    got = env.call("get_function", FunctionName="fn")["Configuration"]
    assert got["LastUpdateStatus"] == "Successful" and "LastUpdateStatusReason" not in got
    assert len({before["RevisionId"], out["RevisionId"], got["RevisionId"]}) == 3


def test_invoke_while_pending_is_a_conflict(env):
    """AWS refuses to invoke a function before it is Active (the transition here takes 20 ms)."""
    env.create("fn", wait=False)
    with pytest.raises(ResourceConflictException) as err:
        env.svc.resolve_version(ACCOUNT, "fn")
    assert err.value.message == ("The operation cannot be performed at this time. The function is currently in "
                                 "the following state: Pending")
    env.call("get_function", FunctionName="fn")           # the transition completes (here: at this read)
    assert env.svc.resolve_version(ACCOUNT, "fn").state == "Active"


def test_pending_completes_by_itself(env):
    """Without any read, the background transition makes the function Active within tens of ms."""
    import time
    env.create("fn", wait=False)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            assert env.svc.resolve_version(ACCOUNT, "fn").state == "Active"
            return
        except ResourceConflictException:
            time.sleep(0.01)
    raise AssertionError("still Pending after 2 s")


def test_defaults(env):
    out = env.create("fn")
    assert (out["MemorySize"], out["Timeout"], out["Description"]) == (128, 3, "")
    assert "Environment" not in out


def test_get_function_and_configuration_by_every_name_form(env):
    env.create("fn", Tags={"team": "a"})
    for ident in ("fn", f"{ACCOUNT}:function:fn", ARN + "fn", ARN + "fn:$LATEST", "fn:$LATEST"):
        assert env.call("get_function_configuration", FunctionName=ident)["FunctionName"] == "fn"
    got = env.call("get_function", FunctionName="fn")
    assert got["Code"]["RepositoryType"] == "S3"
    assert got["Code"]["Location"].startswith("https://127.0.0.1:9000/_lambdalet/code?token=")
    assert got["Tags"] == {"team": "a"} and "Concurrency" not in got


def test_code_location_token_opens_with_the_code_url_key(env):
    from lambdalet.crypto.tokens import read_token
    data = make_zip({"x.py": "x = 1"})
    env.create("fn", Code={"ZipFile": data})
    token = env.call("get_function", FunctionName="fn")["Code"]["Location"].split("token=", 1)[1]
    claims = read_token(env.keyring.derive_key("code-url"), token)
    # Bound to this creation of the function (its internal id) and version (api/code_download.py).
    assert claims.keys() == {"a", "s", "i", "v"} and claims["v"] == "$LATEST" and len(claims["i"]) == 36
    assert (claims["a"], claims["s"]) == (ACCOUNT, hashlib.sha256(data).hexdigest())
    assert env.blobs.get(claims["s"]) == data


def test_duplicate_create_conflicts(env):
    env.create("fn")
    with pytest.raises(ResourceConflictException, match="Function already exist: fn"):
        env.create("fn")


def test_missing_function_names_the_arn(env):
    with pytest.raises(ResourceNotFoundException, match=f"Function not found: {ARN}nope"):
        env.call("get_function", FunctionName="nope")
    env.create("fn")
    with pytest.raises(ResourceNotFoundException, match=f"{ARN}fn:7"):
        env.call("get_function", FunctionName="fn", Qualifier="7")
    with pytest.raises(ResourceNotFoundException):
        env.call("get_function_configuration", FunctionName="fn:noalias")


def test_other_account_and_region(env):
    env.create("fn")
    with pytest.raises(AccessDeniedException, match="not authorized"):
        env.call("get_function", FunctionName=f"arn:aws:lambda:{REGION}:{OTHER_ACCOUNT}:function:fn")
    with pytest.raises(ResourceNotFoundException, match="not reachable in this region"):
        env.call("get_function", FunctionName=f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:fn")
    # Another account and another region each have their own namespace.
    other = make_ctx(OTHER_ACCOUNT)
    with pytest.raises(ResourceNotFoundException):
        env.svc.get_function(other, {"FunctionName": "fn"})
    with pytest.raises(ResourceNotFoundException):
        env.svc.get_function(make_ctx(region="eu-west-1"), {"FunctionName": "fn"})


def test_qualifier_conflict(env):
    env.create("fn")
    with pytest.raises(InvalidParameterValueException, match="does not match"):
        env.call("get_function", FunctionName="fn:$LATEST", Qualifier="1")


# ---------------- validation ----------------

BAD_CREATE = [
    ({"FunctionName": "bad name!"}, "functionName"),
    ({"FunctionName": "a" * 65}, "functionName"),
    ({"FunctionName": "x/y"}, "functionName"),
    ({"MemorySize": 127}, "memorySize"),
    ({"MemorySize": 10241}, "memorySize"),
    ({"Timeout": 0}, "timeout"),
    ({"Timeout": 901}, "timeout"),
    ({"Timeout": "3"}, "timeout"),
    ({"EphemeralStorage": {"Size": 511}}, "ephemeralStorage"),
    ({"EphemeralStorage": {"Size": 10241}}, "ephemeralStorage"),
    ({"Handler": "has space"}, "handler"),
    ({"Handler": "x" * 129}, "handler"),
    ({"Role": "not-a-role"}, "role"),
    ({"Description": "d" * 257}, "description"),
    ({"Runtime": "python2.9"}, "runtime"),
    ({"Runtime": "python2.7"}, "python2.7 is no longer supported"),
    ({"Architectures": ["x86_64", "arm64"]}, "architectures"),
    ({"Architectures": ["mips"]}, "architectures"),
    ({"TracingConfig": {"Mode": "Sometimes"}}, "tracingConfig"),
    ({"KMSKeyArn": "not-an-arn"}, "kMSKeyArn"),
    ({"PackageType": "Image"}, "PackageType Image"),
    ({"Environment": {"Variables": {"1BAD": "x"}}}, "environment.variables"),
    ({"Environment": {"Variables": {"A": "x", "AWS_REGION": "eu-west-1"}}}, "AWS_REGION"),
    ({"Environment": {"Variables": {f"K{i}": "v" * 100 for i in range(45)}}}, "exceeded the 4KB limit"),
    ({"Layers": [f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:lib:1"]}, "does not exist"),
    ({"VpcConfig": {"SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}}, "VPC"),
    ({"FileSystemConfigs": [{"Arn": "arn:aws:elasticfilesystem:x", "LocalMountPath": "/mnt/x"}]}, "FileSystem"),
    ({"ImageConfig": {"Command": ["x"]}}, "ImageConfig"),
    ({"Code": {"S3Bucket": "b", "S3Key": "k"}}, "zip upload"),
    ({"Code": {"ImageUri": "x"}}, "zip upload"),
    ({"Code": {}}, "ZipFile"),
    ({"Code": {"ZipFile": b"not a zip"}}, "Could not unzip"),
    ({"Handler": None}, "Runtime and Handler are mandatory"),
    ({"Tags": {"aws:x": "1"}}, "reserved"),
    ({"Tags": {f"k{i}": "v" for i in range(51)}}, "tag limit"),
    ({"LoggingConfig": {"LogFormat": "Text", "ApplicationLogLevel": "DEBUG"}}, "JSON"),
    ({"Publish": "yes"}, "publish"),
]


@pytest.mark.parametrize("over, needle", BAD_CREATE, ids=[n for _, n in BAD_CREATE])
def test_invalid_create_is_refused_and_writes_nothing(env, over, needle):
    params = dict(FunctionName="fn", Runtime="python3.12", Role=ROLE, Handler="app.handler",
                  Code={"ZipFile": make_zip()})
    params.update(over)
    params = {k: v for k, v in params.items() if v is not None}
    with pytest.raises(PARAM_ERRORS) as err:
        env.svc.create_function(env.ctx, params)
    assert needle in err.value.message
    assert_aws_kind(err.value)
    assert _count_rows(env, "functions") == 0 and _count_rows(env, "function_versions") == 0
    assert blob_files(env) == []


def test_missing_role_is_refused(env):
    with pytest.raises(ValidationException, match="Value null at 'role' failed to satisfy constraint: Member must not be null"):
        env.svc.create_function(env.ctx, dict(FunctionName="fn", Runtime="python3.12", Handler="a.b",
                                              Code={"ZipFile": make_zip()}))


def test_env_error_does_not_echo_bad_key_values(env):
    with pytest.raises(ValidationException) as err:
        env.create("fn", Environment={"Variables": {"bad-key": "s3cr3t-value"}})
    assert "s3cr3t-value" not in err.value.message


def test_oversized_zip_is_request_too_large_and_writes_nothing(env, monkeypatch):
    from lambdalet.services import code
    monkeypatch.setattr(code, "ZIPPED_SIZE_LIMIT", 100)
    with pytest.raises(RequestEntityTooLargeException):
        env.create("fn", Code={"ZipFile": make_zip({"a.py": "x" * 5000}, stored=True)})
    assert blob_files(env) == [] and _count_rows(env, "functions") == 0


def test_hostile_zip_is_refused_before_storing(env):
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../escape.py", "x")
    with pytest.raises(InvalidParameterValueException):
        env.create("fn", Code={"ZipFile": buf.getvalue()})
    assert blob_files(env) == []


def test_architecture_and_options_are_stored(env):
    out = env.create("fn", Architectures=["arm64"], EphemeralStorage={"Size": 2048},
                     TracingConfig={"Mode": "Active"}, KMSKeyArn=f"arn:aws:kms:{REGION}:{ACCOUNT}:key/abc",
                     DeadLetterConfig={"TargetArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:dlq"},
                     LoggingConfig={"LogFormat": "JSON"}, VpcConfig={"SubnetIds": [], "SecurityGroupIds": []},
                     Layers=[])
    assert out["Architectures"] == ["arm64"] and out["EphemeralStorage"] == {"Size": 2048}
    assert out["TracingConfig"] == {"Mode": "Active"} and out["KMSKeyArn"].endswith("key/abc")
    assert out["DeadLetterConfig"]["TargetArn"].endswith(":dlq")
    assert out["LoggingConfig"] == {"LogFormat": "JSON", "LogGroup": "/aws/lambda/fn",
                                    "ApplicationLogLevel": "INFO", "SystemLogLevel": "INFO"}


# ---------------- secrets at rest ----------------

def test_env_vars_and_code_are_not_stored_in_plain_text(env):
    secret = "SUPERSECRETVALUE-7f3a9c"
    code_marker = "CODEMARKER-51c2e0d4"
    env.create("fn", Environment={"Variables": {"DB_PASSWORD": secret}},
               Code={"ZipFile": make_zip({"app.py": f"# {code_marker}\n"}, stored=True)})
    env.call("publish_version", FunctionName="fn")
    env.call("update_function_configuration", FunctionName="fn",
             Environment={"Variables": {"DB_PASSWORD": secret + "2"}})
    env.svc.deps.db.close()      # flush nothing extra: read the files as they are, WAL included
    on_disk = b"".join(p.read_bytes() for p in env.data_dir.rglob("*") if p.is_file())
    assert secret.encode() not in on_disk
    assert b"DB_PASSWORD" not in on_disk        # names are sealed too (the model marks them sensitive)
    assert code_marker.encode() not in on_disk


def test_sealed_env_is_bound_to_its_version_row(env):
    """A sealed value copied onto another version row does not open (AAD binds function+version)."""
    import sqlalchemy as sa
    from lambdalet.crypto.errors import DecryptionError
    from lambdalet.store import schema
    env.create("fn", Environment={"Variables": {"A": "1"}})
    env.call("update_function_configuration", FunctionName="fn", Environment={"Variables": {"A": "2"}})
    env.call("publish_version", FunctionName="fn")
    v = schema.function_versions
    with env.svc.deps.db.begin() as conn:
        latest = conn.execute(sa.select(v.c.env_sealed).where(v.c.version == "$LATEST")).scalar()
        conn.execute(v.update().where(v.c.version == "1").values(env_sealed=latest))
    with pytest.raises(DecryptionError):
        env.call("get_function_configuration", FunctionName="fn", Qualifier="1")


# ---------------- list ----------------

def test_list_functions_pages(env):
    names = [f"f{i:02d}" for i in range(7)]
    for n in names:
        env.create(n)
    seen, marker, pages = [], None, 0
    while True:
        params = {"MaxItems": 3}
        if marker:
            params["Marker"] = marker
        page = env.call("list_functions", **params)
        assert len(page["Functions"]) <= 3
        seen += [f["FunctionName"] for f in page["Functions"]]
        pages += 1
        marker = page.get("NextMarker")
        if not marker:
            break
    assert seen == names and pages == 3
    assert len(env.call("list_functions")["Functions"]) == 7       # default MaxItems 50


def test_list_functions_all_versions_and_deletes_between_pages(env):
    env.create("a")
    env.call("publish_version", FunctionName="a")
    env.create("b")
    everything = env.call("list_functions", FunctionVersion="ALL")["Functions"]
    assert [(f["FunctionName"], f["Version"]) for f in everything] == [("a", "$LATEST"), ("a", "1"), ("b", "$LATEST")]
    first = env.call("list_functions", FunctionVersion="ALL", MaxItems=1)
    env.call("delete_function", FunctionName="a", Qualifier="1")
    rest = env.call("list_functions", FunctionVersion="ALL", Marker=first["NextMarker"])
    assert [(f["FunctionName"], f["Version"]) for f in rest["Functions"]] == [("b", "$LATEST")]


@pytest.mark.parametrize("params", [{"MaxItems": 0}, {"MaxItems": 10001}, {"Marker": "garbage!"},
                                    {"FunctionVersion": "SOME"}])
def test_list_functions_bad_params(env, params):
    with pytest.raises(PARAM_ERRORS) as err:
        env.call("list_functions", **params)
    assert_aws_kind(err.value)


def test_list_is_scoped_to_account(env):
    env.create("mine")
    assert env.svc.list_functions(make_ctx(OTHER_ACCOUNT), {})["Functions"] == []


# ---------------- update ----------------

def test_update_code_changes_sha_and_revision(env):
    first = env.create("fn")
    env.tick()
    data = make_zip({"app.py": "def handler(e, c):\n    return 2\n"})
    out = env.call("update_function_code", FunctionName="fn", ZipFile=data)
    assert out["CodeSha256"] == b64sha(data) and out["CodeSize"] == len(data)
    assert out["RevisionId"] != first["RevisionId"] and out["LastModified"] != first["LastModified"]
    assert out["LastUpdateStatus"] == "InProgress"          # as AWS answers an update
    got = env.call("get_function", FunctionName="fn")
    assert got["Configuration"]["LastUpdateStatus"] == "Successful"
    token = got["Code"]["Location"].split("token=")[1]
    from lambdalet.crypto.tokens import read_token
    assert env.blobs.get(read_token(env.keyring.derive_key("code-url"), token)["s"]) == data


def test_update_code_revision_precondition(env):
    first = env.create("fn")
    with pytest.raises(PreconditionFailedException, match="Revision Id"):
        env.call("update_function_code", FunctionName="fn", ZipFile=make_zip({"b.py": ""}), RevisionId="stale")
    ok = env.call("update_function_code", FunctionName="fn", ZipFile=make_zip({"b.py": ""}),
                  RevisionId=first["RevisionId"])
    assert ok["RevisionId"] != first["RevisionId"]


def test_update_code_dry_run_changes_nothing(env):
    first = env.create("fn")
    data = make_zip({"dry.py": "x"})
    out = env.call("update_function_code", FunctionName="fn", ZipFile=data, DryRun=True)
    assert out["CodeSha256"] == b64sha(data)
    after = env.call("get_function_configuration", FunctionName="fn")
    assert after["CodeSha256"] == first["CodeSha256"] and after["RevisionId"] == first["RevisionId"]
    assert not env.blobs.exists(hashlib.sha256(data).hexdigest())


def test_update_code_with_publish_returns_the_version(env):
    env.create("fn")
    out = env.call("update_function_code", FunctionName="fn", ZipFile=make_zip({"v2.py": ""}), Publish=True)
    assert out["Version"] == "1" and out["FunctionArn"] == ARN + "fn:1"


def test_update_code_refuses_s3_and_versions(env):
    env.create("fn")
    with pytest.raises(InvalidParameterValueException, match="zip upload"):
        env.call("update_function_code", FunctionName="fn", S3Bucket="b", S3Key="k")
    with pytest.raises(InvalidParameterValueException, match="versions other than"):
        env.call("update_function_code", FunctionName="fn:1", ZipFile=make_zip())


def test_update_configuration(env):
    first = env.create("fn", Environment={"Variables": {"A": "1"}}, MemorySize=256)
    out = env.call("update_function_configuration", FunctionName="fn", MemorySize=512, Timeout=30,
                   Description="second", Environment={"Variables": {"B": "two"}})
    assert (out["MemorySize"], out["Timeout"], out["Description"]) == (512, 30, "second")
    assert out["Environment"] == {"Variables": {"B": "two"}}
    assert out["Handler"] == "app.handler" and out["Runtime"] == "python3.12"
    assert out["RevisionId"] != first["RevisionId"]
    cleared = env.call("update_function_configuration", FunctionName="fn", Environment={"Variables": {}})
    # AWS echoes a given Environment, an empty one included (recorded for CreateFunction)
    assert cleared["Environment"] == {"Variables": {}} and cleared["MemorySize"] == 512


@pytest.mark.parametrize("over", [{"MemorySize": 100}, {"MemorySize": 20000}, {"Timeout": 901},
                                  {"Runtime": "python2.7"}, {"Environment": {"Variables": {"AWS_LAMBDA_FUNCTION_NAME": "x"}}},
                                  {"Handler": "a b"}, {"Role": "arn:aws:iam::1:role/x"}])
def test_update_configuration_validation_leaves_function_unchanged(env, over):
    first = env.create("fn", MemorySize=256)
    with pytest.raises(PARAM_ERRORS) as err:
        env.call("update_function_configuration", FunctionName="fn", **over)
    assert_aws_kind(err.value)
    after = env.call("get_function_configuration", FunctionName="fn")
    assert after["MemorySize"] == 256 and after["RevisionId"] == first["RevisionId"]


def test_update_configuration_revision_precondition(env):
    env.create("fn")
    with pytest.raises(PreconditionFailedException):
        env.call("update_function_configuration", FunctionName="fn", Timeout=5, RevisionId="nope")


# ---------------- delete ----------------

def test_delete_function_removes_everything(env):
    env.create("fn", Tags={"a": "b"})
    env.call("publish_version", FunctionName="fn")
    env.call("create_alias", FunctionName="fn", Name="live", FunctionVersion="1")
    env.call("put_function_concurrency", FunctionName="fn", ReservedConcurrentExecutions=5)
    assert env.call("delete_function", FunctionName="fn") == {"StatusCode": 204}
    for table in ("functions", "function_versions", "aliases", "tags"):
        assert _count_rows(env, table) == 0
    with pytest.raises(ResourceNotFoundException):
        env.call("delete_function", FunctionName="fn")
    # A new function of the same name starts from scratch (versions, tags).
    env.create("fn")
    assert env.call("list_tags", Resource=ARN + "fn") == {"Tags": {}}
    assert env.call("publish_version", FunctionName="fn")["Version"] == "1"


def test_delete_version_rules(env):
    env.create("fn")
    env.call("publish_version", FunctionName="fn")
    env.call("update_function_code", FunctionName="fn", ZipFile=make_zip({"v2.py": ""}))
    env.call("publish_version", FunctionName="fn")
    env.call("create_alias", FunctionName="fn", Name="live", FunctionVersion="2")
    with pytest.raises(InvalidParameterValueException, match=r"\$LATEST"):
        env.call("delete_function", FunctionName="fn", Qualifier="$LATEST")
    with pytest.raises(ResourceConflictException, match=r"\[live\]"):
        env.call("delete_function", FunctionName="fn", Qualifier="2")
    with pytest.raises(InvalidParameterValueException, match="DeleteAlias"):
        env.call("delete_function", FunctionName="fn", Qualifier="live")
    assert env.call("delete_function", FunctionName="fn:1") == {"StatusCode": 204}
    versions = [v["Version"] for v in env.call("list_versions_by_function", FunctionName="fn")["Versions"]]
    assert versions == ["$LATEST", "2"]
    # Version numbers are never reused.
    env.call("update_function_code", FunctionName="fn", ZipFile=make_zip({"v3.py": ""}))
    assert env.call("publish_version", FunctionName="fn")["Version"] == "3"
