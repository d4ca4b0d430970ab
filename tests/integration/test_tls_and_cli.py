"""TLS (verified, TLS 1.2+ only), the `lambdalet env` + AWS CLI quick start, and --insecure-http."""
from __future__ import annotations

import json
import os
import shlex
import socket
import ssl
import stat
import subprocess
import sys
import time
import warnings
from urllib.parse import urlsplit

import pytest
import requests

from .e2e_support import ROLE, code_sha256, default_zip, delete_quietly, unique

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _host_port(url):
    parts = urlsplit(url)
    return parts.hostname, parts.port


def test_endpoint_file_and_env_output(server):
    ep = json.loads((server.data_dir / "endpoint.json").read_text())
    assert ep["url"].startswith("https://127.0.0.1:")
    assert ep["pid"] == server.proc.pid
    assert ep["region"] == "us-east-1"
    assert os.path.samefile(ep["ca_bundle"], server.data_dir / "tls" / "ca.pem")
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                "AWS_CA_BUNDLE"):
        assert server.env.get(key), f"`lambdalet env` did not print {key}: {server.env}"
    assert server.env["AWS_ENDPOINT_URL"] == ep["url"]
    assert server.env["AWS_DEFAULT_REGION"] == "us-east-1"
    mode = stat.S_IMODE((server.data_dir / "master.key").stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert (server.data_dir / "master.key").stat().st_size >= 32


def test_eval_env_then_aws_cli(server):
    """The README's quick start, literally: eval "$(lambdalet env)"; aws lambda list-functions."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, PYTHONUNBUFFERED="1")
    py = shlex.quote(sys.executable)
    script = (f'set -e; eval "$({py} -m lambdalet env --data-dir {shlex.quote(str(server.data_dir))})"; '
              f'test -n "$AWS_CA_BUNDLE"; {py} -m awscli lambda list-functions --output json')
    res = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert res.returncode == 0, f"rc={res.returncode}\nstdout={res.stdout}\nstderr={res.stderr}"
    assert "Functions" in json.loads(res.stdout)


def test_boto3_from_environment_alone(server):
    """boto3 with nothing but the env vars `lambdalet env` prints (AWS_ENDPOINT_URL, AWS_CA_BUNDLE...)."""
    code = ("import boto3, json; c = boto3.client('lambda'); "
            "print(json.dumps(c.list_functions()['ResponseMetadata']['HTTPStatusCode']))")
    res = subprocess.run([sys.executable, "-c", code], env=server.cli_env(), capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "200"


def test_cli_create_get_delete(server, tmp_path):
    name = unique("cli")
    zpath = tmp_path / "fn.zip"
    zbytes = default_zip("cli")
    zpath.write_bytes(zbytes)
    try:
        res = server.cli("create-function", "--function-name", name, "--runtime", "python3.11",
                         "--handler", "app.handler", "--role", ROLE, "--zip-file", f"fileb://{zpath}",
                         "--environment", "Variables={GREETING=hi}", "--output", "json")
        assert res.returncode == 0, res.stderr
        created = json.loads(res.stdout)
        assert created["FunctionName"] == name and created["CodeSha256"] == code_sha256(zbytes)
        res = server.cli("wait", "function-active-v2", "--function-name", name)
        assert res.returncode == 0, res.stderr
        res = server.cli("get-function-configuration", "--function-name", name, "--output", "json")
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["Environment"]["Variables"] == {"GREETING": "hi"}
        res = server.cli("get-function", "--function-name", name, "--query", "Code.Location", "--output", "text")
        assert res.returncode == 0, res.stderr
        assert requests.get(res.stdout.strip(), verify=server.ca, timeout=30).content == zbytes
        res = server.cli("delete-function", "--function-name", name)
        assert res.returncode == 0, res.stderr
        res = server.cli("get-function", "--function-name", name)
        assert res.returncode != 0
        assert "ResourceNotFoundException" in res.stderr, res.stderr
    finally:
        delete_quietly(server.client(), name)


def test_cli_reports_typed_errors(server, tmp_path):
    zpath = tmp_path / "fn.zip"
    zpath.write_bytes(default_zip())
    res = server.cli("create-function", "--function-name", unique("cli-rt"), "--runtime", "python2.7",
                     "--handler", "app.handler", "--role", ROLE, "--zip-file", f"fileb://{zpath}")
    assert res.returncode != 0
    assert "InvalidParameterValueException" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    res = server.cli("get-function", "--function-name", unique("cli-missing"))
    assert res.returncode != 0
    assert "ResourceNotFoundException" in res.stderr, res.stderr


def _tls_client(maximum, minimum=None, ca=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = minimum or ssl.TLSVersion.TLSv1
        ctx.maximum_version = maximum
    # let this client really offer old protocols (OpenSSL 3 disables them at the default security level)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


def _handshake(server, ctx):
    host, port = _host_port(server.url)
    with socket.create_connection((host, port), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname=host) as tls:
            return tls.version()


def test_tls_1_1_refused_tls_1_2_accepted(server):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = _tls_client(ssl.TLSVersion.TLSv1_1, ca=server.ca)
        new = _tls_client(ssl.TLSVersion.TLSv1_2, minimum=ssl.TLSVersion.TLSv1_2, ca=server.ca)
    assert _handshake(server, new) == "TLSv1.2"  # control: same client settings, TLS 1.2 works
    with pytest.raises(ssl.SSLError) as err:
        version = _handshake(server, old)
        pytest.fail(f"server completed a {version} handshake")
    reason = getattr(err.value, "reason", "") or str(err.value)
    if reason in ("NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE"):
        pytest.skip(f"this OpenSSL cannot offer TLS 1.1 at all ({reason}); inconclusive")


def test_certificate_verifies_only_with_local_ca(server):
    # hostname 127.0.0.1 verifies against the data dir's CA...
    r = requests.get(server.url + "/2015-03-31/functions/", verify=server.ca, timeout=30)
    assert r.status_code == 403  # unsigned, but TLS worked
    # ...and not against the public roots
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(server.url + "/2015-03-31/functions/", timeout=30)


def test_plain_http_on_tls_port_gets_nothing_useful(server):
    host, port = _host_port(server.url)
    try:
        r = requests.get(f"http://{host}:{port}/2015-03-31/functions/", timeout=10)
    except requests.exceptions.ConnectionError:
        return
    assert "Functions" not in r.text


def test_insecure_http_warns_and_serves(lambdalet_server_factory):
    srv = lambdalet_server_factory("--insecure-http")
    assert srv.url.startswith("http://"), srv.url
    stderr = srv.stderr_path.read_text(errors="replace")
    assert "warning" in stderr.lower(), f"no warning on stderr: {stderr!r}"
    assert "AWS_CA_BUNDLE" not in srv.env or not srv.env["AWS_CA_BUNDLE"]
    lam = srv.client()
    assert "Functions" in lam.list_functions()


def test_clients_that_hang_up_mid_request_cost_nothing(server):
    """Bodies cut short by the client (declared longer than sent, then gone) and heads that never
    end: the server answers nothing to nobody, logs no internal error and keeps serving."""
    host, port = _host_port(server.url)
    ctx = ssl.create_default_context(cafile=str(server.ca))
    for head in (b"POST /2015-03-31/functions/x/invocations HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n{\"a\":",
                 b"POST /2015-03-31/functions/x/invocations HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":",
                 b"GET /2015-03-31/functions/ HTTP/1.1\r\nHost: h\r\nX-Half: "):
        for _ in range(20):
            with socket.create_connection((host, port), timeout=10) as sock:
                with ctx.wrap_socket(sock, server_hostname=host) as tls:
                    tls.sendall(head)
    lam = server.client("lambda")
    assert "Functions" in lam.list_functions()
    time.sleep(0.5)
    assert "internal error" not in server.log_text(20000)
