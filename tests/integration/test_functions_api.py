"""Functions through boto3 against a real server (TLS verified): lifecycle, paging, code download,
waiters, and the validation errors AWS answers."""
from __future__ import annotations

import zipfile
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import requests
from botocore.config import Config

from .e2e_support import (
    HANDLER_CODE,
    ROLE,
    WAIT,
    code_sha256,
    create_function,
    default_zip,
    delete_quietly,
    expect_error,
    make_zip,
    unique,
)

# Constraint violations that the model itself describes (patterns, min/max): real AWS answers these
# with the generic `ValidationException` ("1 validation error detected: ..."); lambdalet may use the
# modelled InvalidParameterValueException. Both are HTTP 400 and typed; anything else is a bug.
MODEL_VALIDATION = {"InvalidParameterValueException", "ValidationException"}


@pytest.fixture
def lam(server):
    return server.client()


@pytest.fixture
def lam_novalidate(server):
    return server.client(config=Config(parameter_validation=False))


@pytest.fixture
def fn(lam):
    """A fresh function; deleted afterwards."""
    name = unique("fn")
    zip_bytes = make_zip({"app.py": HANDLER_CODE, "lib/data.txt": "x" * 100})
    resp = create_function(lam, name, zip_bytes=zip_bytes, MemorySize=256, Timeout=10,
                           Environment={"Variables": {"A": "1"}}, Description="first")
    yield name, zip_bytes, resp
    delete_quietly(lam, name)


def test_create_returns_configuration(lam, server, fn):
    name, zip_bytes, resp = fn
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert resp["FunctionName"] == name
    assert resp["FunctionArn"] == server.function_arn(name)
    assert resp["Runtime"] == "python3.11"
    assert resp["Handler"] == "app.handler"
    assert resp["Role"] == ROLE
    assert resp["MemorySize"] == 256
    assert resp["Timeout"] == 10
    assert resp["Description"] == "first"
    assert resp["Version"] == "$LATEST"
    assert resp["Environment"]["Variables"] == {"A": "1"}
    assert resp["CodeSha256"] == code_sha256(zip_bytes)
    assert resp["CodeSize"] == len(zip_bytes)
    assert resp["State"] in ("Pending", "Active")
    assert resp["PackageType"] == "Zip"
    assert resp["RevisionId"]
    assert resp["LastModified"]
    assert resp["ResponseMetadata"].get("RequestId"), "no x-amzn-RequestId"


def test_unicode_round_trip(lam):
    name = unique("uni")
    try:
        create_function(lam, name, Description="héllo ✓ 日本", Environment={"Variables": {"U": "ünïcødé ✓ 日本"}})
        conf = lam.get_function_configuration(FunctionName=name, Qualifier="$LATEST")
        assert conf["Description"] == "héllo ✓ 日本"
        assert conf["Environment"]["Variables"] == {"U": "ünïcødé ✓ 日本"}
    finally:
        delete_quietly(lam, name)


def test_defaults_match_aws(lam):
    name = unique("defaults")
    try:
        resp = create_function(lam, name)
        assert resp["MemorySize"] == 128
        assert resp["Timeout"] == 3
        assert resp.get("Architectures", ["x86_64"]) == ["x86_64"]
    finally:
        delete_quietly(lam, name)


def test_get_function_and_configuration(lam, server, fn):
    name, zip_bytes, _ = fn
    got = lam.get_function(FunctionName=name)
    cfg = got["Configuration"]
    assert cfg["FunctionName"] == name
    assert cfg["State"] == "Active"
    assert cfg["LastUpdateStatus"] == "Successful"
    assert cfg["CodeSha256"] == code_sha256(zip_bytes)
    assert got["Code"]["Location"].startswith("https://")
    conf = lam.get_function_configuration(FunctionName=name)
    assert conf["CodeSha256"] == cfg["CodeSha256"]
    assert conf["RevisionId"] == cfg["RevisionId"]
    # Every documented way of naming a function: name, full ARN, partial ARN.
    for ident in (server.function_arn(name), f"{server.account_id}:function:{name}"):
        assert lam.get_function_configuration(FunctionName=ident)["FunctionName"] == name


def test_code_location_downloads_exact_zip(lam, server, fn):
    name, zip_bytes, _ = fn
    loc = lam.get_function(FunctionName=name)["Code"]["Location"]
    assert loc.startswith(server.url.rstrip("/") + "/"), f"Code.Location {loc!r} is not on {server.url}"
    r = requests.get(loc, verify=server.ca, timeout=30)
    assert r.status_code == 200, (r.status_code, r.text[:500])
    assert r.content == zip_bytes


def _flip(v: str, i: int) -> str:
    # Only characters well inside the value: the last character of base64 text can carry ignored bits.
    return v[:i] + ("A" if v[i] != "A" else "B") + v[i + 1:]


def _tamper(url: str) -> list[str]:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    out = []
    for i, (k, v) in enumerate(query):
        if len(v) < 8:
            continue
        for nv in (_flip(v, len(v) // 2), _flip(v, 3), v + "x"):
            q = list(query)
            q[i] = (k, nv)
            out.append(urlunsplit(parts._replace(query=urlencode(q))))
    if query:
        out.append(urlunsplit(parts._replace(query="")))
    else:  # token carried in the path
        head, _, last = parts.path.rpartition("/")
        if len(last) >= 8:
            out.append(urlunsplit(parts._replace(path=f"{head}/{_flip(last, len(last) // 2)}")))
    return out


def test_code_location_tampered_is_refused(lam, server, fn):
    name, zip_bytes, _ = fn
    loc = lam.get_function(FunctionName=name)["Code"]["Location"]
    tampered = _tamper(loc)
    assert len(tampered) >= 2
    for url in tampered:
        r = requests.get(url, verify=server.ca, timeout=30)
        assert r.status_code == 403, f"tampered URL {url} answered {r.status_code}: {r.content[:200]!r}"
        assert zip_bytes not in r.content


def test_list_functions_pages_with_max_items_and_marker(lam):
    prefix = unique("page")
    names = [f"{prefix}-{i}" for i in range(7)]
    try:
        for n in names:
            create_function(lam, n, wait=False)
        seen, marker, pages = [], None, 0
        while True:
            kw = {"MaxItems": 3}
            if marker:
                kw["Marker"] = marker
            page = lam.list_functions(**kw)
            pages += 1
            assert len(page["Functions"]) <= 3, f"page of {len(page['Functions'])} with MaxItems=3"
            seen += [f["FunctionName"] for f in page["Functions"]]
            marker = page.get("NextMarker")
            if not marker:
                break
            assert pages < 1000
        assert len(seen) == len(set(seen)), f"duplicates across pages: {seen}"
        mine = [n for n in seen if n.startswith(prefix)]
        assert sorted(mine) == sorted(names)
        assert pages >= 3
        # The botocore paginator walks the same pages.
        via_paginator = [f["FunctionName"] for p in lam.get_paginator("list_functions").paginate(
            PaginationConfig={"PageSize": 3}) for f in p["Functions"]]
        assert sorted(n for n in via_paginator if n.startswith(prefix)) == sorted(names)
    finally:
        for n in names:
            delete_quietly(lam, n)


def test_update_code_and_publish(lam, server, fn):
    name, zip_bytes, first = fn
    new_zip = make_zip({"app.py": HANDLER_CODE + "# v2\n"})
    upd = lam.update_function_code(FunctionName=name, ZipFile=new_zip)
    assert upd["CodeSha256"] == code_sha256(new_zip)
    assert upd["CodeSize"] == len(new_zip)
    assert upd["RevisionId"] != first["RevisionId"]
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    loc = lam.get_function(FunctionName=name)["Code"]["Location"]
    assert requests.get(loc, verify=server.ca, timeout=30).content == new_zip

    third = make_zip({"app.py": HANDLER_CODE + "# v3\n"})
    pub = lam.update_function_code(FunctionName=name, ZipFile=third, Publish=True)
    assert pub["Version"] not in ("$LATEST", "", None), pub
    assert pub["CodeSha256"] == code_sha256(third)
    lam.get_waiter("published_version_active").wait(FunctionName=name, Qualifier=pub["Version"],
                                                    WaiterConfig=WAIT)
    v = lam.get_function_configuration(FunctionName=name, Qualifier=pub["Version"])
    assert v["Version"] == pub["Version"]
    assert v["CodeSha256"] == code_sha256(third)
    assert v["FunctionArn"] == server.function_arn(name, pub["Version"])


def test_update_code_revision_id_mismatch(lam, fn):
    name, _, first = fn
    current = lam.get_function_configuration(FunctionName=name)["RevisionId"]
    with expect_error("PreconditionFailedException", 412):
        lam.update_function_code(FunctionName=name, ZipFile=default_zip("other"),
                                 RevisionId="00000000-0000-0000-0000-000000000000")
    with expect_error("PreconditionFailedException", 412):
        lam.update_function_configuration(FunctionName=name, Description="x",
                                          RevisionId="00000000-0000-0000-0000-000000000000")
    # the right RevisionId works
    ok = lam.update_function_code(FunctionName=name, ZipFile=default_zip("other"), RevisionId=current)
    assert ok["RevisionId"] != current


def test_update_configuration(lam, fn):
    name, _, _ = fn
    upd = lam.update_function_configuration(FunctionName=name, MemorySize=512, Timeout=30,
                                            Environment={"Variables": {"B": "two", "C": "3"}},
                                            Description="second")
    assert upd["MemorySize"] == 512
    assert upd["Timeout"] == 30
    assert upd["Environment"]["Variables"] == {"B": "two", "C": "3"}
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    conf = lam.get_function_configuration(FunctionName=name)
    assert (conf["MemorySize"], conf["Timeout"], conf["Description"]) == (512, 30, "second")
    assert conf["Environment"]["Variables"] == {"B": "two", "C": "3"}
    # fields not mentioned stay as they were
    assert conf["Handler"] == "app.handler" and conf["Runtime"] == "python3.11"


def test_delete_function_and_version(lam, fn):
    name, _, _ = fn
    v1 = lam.publish_version(FunctionName=name)["Version"]
    lam.update_function_code(FunctionName=name, ZipFile=default_zip("v2"))
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    v2 = lam.publish_version(FunctionName=name)["Version"]
    assert v1 != v2
    resp = lam.delete_function(FunctionName=name, Qualifier=v1)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    with expect_error("ResourceNotFoundException", 404):
        lam.get_function_configuration(FunctionName=name, Qualifier=v1)
    versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]]
    assert v1 not in versions and v2 in versions and "$LATEST" in versions
    assert lam.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name
    lam.delete_function(FunctionName=name)
    with expect_error("ResourceNotFoundException", 404):
        lam.get_function(FunctionName=name)
    with expect_error("ResourceNotFoundException", 404):
        lam.get_function_configuration(FunctionName=name, Qualifier=v2)
    with expect_error("ResourceNotFoundException", 404):
        lam.delete_function(FunctionName=name)


def test_waiters(lam):
    name = unique("waiters")
    try:
        lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=ROLE,
                            Code={"ZipFile": default_zip()})
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
        lam.get_waiter("function_exists").wait(FunctionName=name, WaiterConfig=WAIT)
        lam.update_function_configuration(FunctionName=name, MemorySize=256)
        lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
        v = lam.publish_version(FunctionName=name)["Version"]
        lam.get_waiter("published_version_active").wait(FunctionName=name, Qualifier=v, WaiterConfig=WAIT)
    finally:
        delete_quietly(lam, name)


# ---------------- validation ----------------

def _create_kwargs(name, **over):
    kw = dict(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=ROLE,
              Code={"ZipFile": default_zip()})
    kw.update(over)
    return kw


def _assert_absent(lam, name):
    with expect_error("ResourceNotFoundException", 404):
        lam.get_function(FunctionName=name)


@pytest.mark.parametrize("bad_name", ["bad name!", "a" * 65, "semi;colon", "x/y"])
def test_bad_function_name(lam_novalidate, lam, bad_name):
    with expect_error(MODEL_VALIDATION, 400):
        lam_novalidate.create_function(**_create_kwargs(bad_name))


@pytest.mark.parametrize("memory", [100, 20000])
def test_bad_memory_size(lam_novalidate, lam, memory):
    name = unique("mem")
    with expect_error(MODEL_VALIDATION, 400):
        lam_novalidate.create_function(**_create_kwargs(name, MemorySize=memory))
    _assert_absent(lam, name)


def test_bad_memory_size_on_update(lam_novalidate, lam, fn):
    name, _, _ = fn
    for memory in (100, 20000):
        with expect_error(MODEL_VALIDATION, 400):
            lam_novalidate.update_function_configuration(FunctionName=name, MemorySize=memory)
    assert lam.get_function_configuration(FunctionName=name)["MemorySize"] == 256


@pytest.mark.parametrize("timeout", [0, 901])
def test_bad_timeout(lam_novalidate, lam, timeout):
    name = unique("timeout")
    with expect_error(MODEL_VALIDATION, 400):
        lam_novalidate.create_function(**_create_kwargs(name, Timeout=timeout))
    _assert_absent(lam, name)


def test_environment_over_4kb(lam):
    name = unique("bigenv")
    env = {f"K{i}": "v" * 100 for i in range(45)}  # ~4.6 KB
    with expect_error("InvalidParameterValueException", 400):
        lam.create_function(**_create_kwargs(name, Environment={"Variables": env}))
    _assert_absent(lam, name)


def test_environment_reserved_key(lam, fn):
    name = unique("resenv")
    with expect_error("InvalidParameterValueException", 400) as err:
        lam.create_function(**_create_kwargs(name, Environment={"Variables": {"AWS_REGION": "eu-west-1"}}))
    assert "AWS_REGION" in err.message
    _assert_absent(lam, name)
    existing, _, _ = fn
    with expect_error("InvalidParameterValueException", 400):
        lam.update_function_configuration(FunctionName=existing,
                                          Environment={"Variables": {"AWS_LAMBDA_FUNCTION_NAME": "x"}})


def test_unknown_runtime(lam_novalidate, lam):
    name = unique("rt")
    with expect_error("InvalidParameterValueException", 400):
        lam_novalidate.create_function(**_create_kwargs(name, Runtime="python2.9"))
    _assert_absent(lam, name)


def test_deprecated_runtime(lam):
    name = unique("rt27")
    with expect_error("InvalidParameterValueException", 400) as err:
        lam.create_function(**_create_kwargs(name, Runtime="python2.7"))
    assert "python2.7" in err.message
    _assert_absent(lam, name)


@pytest.mark.parametrize("handler", ["has space", "x" * 129, "tab\there"])
def test_bad_handler(lam_novalidate, lam, handler):
    name = unique("handler")
    with expect_error(MODEL_VALIDATION, 400):
        lam_novalidate.create_function(**_create_kwargs(name, Handler=handler))
    _assert_absent(lam, name)


def test_bad_role(lam_novalidate, lam):
    name = unique("role")
    with expect_error(MODEL_VALIDATION, 400):
        lam_novalidate.create_function(**_create_kwargs(name, Role="not-a-role"))
    _assert_absent(lam, name)


def test_missing_code(lam_novalidate, lam):
    name = unique("nocode")
    with expect_error(MODEL_VALIDATION, 400):
        lam_novalidate.create_function(**_create_kwargs(name, Code={}))
    _assert_absent(lam, name)


def test_duplicate_create(lam, fn):
    name, _, _ = fn
    with expect_error("ResourceConflictException", 409):
        lam.create_function(**_create_kwargs(name))


def test_missing_function(lam):
    name = unique("missing")
    with expect_error("ResourceNotFoundException", 404) as err:
        lam.get_function(FunctionName=name)
    assert name in err.message
    for call in (lambda: lam.get_function_configuration(FunctionName=name),
                 lambda: lam.update_function_code(FunctionName=name, ZipFile=default_zip()),
                 lambda: lam.update_function_configuration(FunctionName=name, MemorySize=256),
                 lambda: lam.publish_version(FunctionName=name),
                 lambda: lam.list_versions_by_function(FunctionName=name),
                 lambda: lam.delete_function(FunctionName=name)):
        with expect_error("ResourceNotFoundException", 404):
            call()
    with expect_error("ResourceNotFoundException", 404):
        lam.get_function(FunctionName="e2e-exists-never", Qualifier="1")


def test_typed_exceptions_are_raised(lam, fn):
    """boto3's modelled exception classes catch what the server answers."""
    name, _, _ = fn
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=unique("typed"))
    with pytest.raises(lam.exceptions.ResourceConflictException):
        lam.create_function(**_create_kwargs(name))


def test_stored_zip_is_not_unpacked_or_altered(lam, server):
    """Stored (uncompressed) entries, a directory entry and odd-but-legal names round-trip byte for byte."""
    name = unique("roundtrip")
    zip_bytes = make_zip({"app.py": HANDLER_CODE, "pkg/": "", "pkg/__init__.py": "", "data/ü.txt": "ü"},
                         compression=zipfile.ZIP_STORED)
    try:
        resp = create_function(lam, name, zip_bytes=zip_bytes)
        assert resp["CodeSha256"] == code_sha256(zip_bytes)
        loc = lam.get_function(FunctionName=name)["Code"]["Location"]
        assert requests.get(loc, verify=server.ca, timeout=30).content == zip_bytes
    finally:
        delete_quietly(lam, name)
