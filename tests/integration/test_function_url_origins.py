"""Function URLs in browsers (issue 21.8), against a real `lambdalet serve`, two accounts' URLs side by side.

Host style (the FunctionUrl the API reports) is one origin per URL: a cookie a function scopes to the
parent domain every tenant's URL shares is dropped. Path style shares one origin among every URL and
the API: responses are sandboxed (no script), never sniffed, and their cookies confined to the URL's
own path. An interim status (1xx) or a header HTTP cannot carry is a 502.

Plain HTTPS requests prove the headers; when Chromium is installed (/usr/bin/chromium), a real browser
proves what they are for: a cookie tossed at every tenant does not reach the other account's page, and
a path-style page's script does not run while a host-style page's does.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import socket
import ssl
import subprocess
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .e2e_support import create_function, delete_quietly, make_zip, unique
from .tenancy_support import LAMBDA_TRUST, client_as, make_role, second_account
from .url_support import URL_RE, call, make_public

# Answers whatever response description the request carries (query `r`: base64url JSON).
MIRROR = '''
import base64, json

def handler(event, context):
    r = (event.get("queryStringParameters") or {})["r"]
    return json.loads(base64.urlsafe_b64decode(r + "=" * (-len(r) % 4)))
'''
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def answer(description: dict) -> str:
    """The query that makes the mirror function answer `description`."""
    return "r=" + base64.urlsafe_b64encode(json.dumps(description).encode()).decode().rstrip("=")


def _public_mirror(lam, role: str | None = None) -> tuple[str, str]:
    name = unique("origin")
    kw = {"Role": role} if role else {}
    create_function(lam, name, zip_bytes=make_zip({"app.py": MIRROR}), **kw)
    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    make_public(lam, name)
    return name, url


@pytest.fixture(scope="module")
def srv(request):
    return request.getfixturevalue("server")


@pytest.fixture(scope="module")
def tenants(srv):
    """Two accounts' public mirror URLs: {"a": url, "b": url}."""
    lam_a = srv.client()
    _, key_b = second_account(srv, unique("origin-tenant"))
    lam_b = client_as(srv, "lambda", key_b)
    role_b = make_role(client_as(srv, "iam", key_b), LAMBDA_TRUST)
    name_a, url_a = _public_mirror(lam_a)
    name_b, url_b = _public_mirror(lam_b, role_b)
    yield {"a": url_a, "b": url_b}
    delete_quietly(lam_a, name_a)
    delete_quietly(lam_b, name_b)


def _host(url: str) -> str:
    return urlsplit(url).hostname


def _parent(url: str) -> str:
    return _host(url).split(".", 1)[1]         # lambda-url.<region>.localhost: every URL's parent


# ---------------------------------------------------------------------------------------------- plain HTTPS

def test_host_style_drops_cookies_scoped_to_every_tenant(srv, tenants):
    url = tenants["a"]
    own = _host(url)
    reply = call(srv, url, query=answer({
        "statusCode": 200, "headers": {"Content-Type": "text/html", "Set-Cookie": f"h=1; Domain={_parent(url)}"},
        "cookies": ["plain=1; Path=/; HttpOnly", f"own=2; Domain={own}; Secure", f"dot=3; Domain=.{own}",
                    f"tossed=4; Domain={_parent(url)}; Path=/", "local=5; Domain=localhost",
                    f"other=6; Domain={_host(tenants['b'])}", f"region=7; Domain=.{_parent(url).split('.', 1)[1]}"],
        "body": "<p>hi</p>"}))
    assert reply.status == 200, reply.body
    assert reply.headers("set-cookie") == ["plain=1; Path=/; HttpOnly", f"own=2; Domain={own}; Secure",
                                           f"dot=3; Domain=.{own}"]
    # Its own origin: the page is served as the function wrote it, scripts and all.
    assert reply.header("content-security-policy") is None and reply.body == b"<p>hi</p>"


def test_path_style_is_sandboxed_and_its_cookies_confined(srv, tenants):
    url = tenants["a"]
    url_id = URL_RE.fullmatch(url)["id"]
    reply = call(srv, url, style="path", query=answer({
        "statusCode": 200,
        "headers": {"Content-Type": "text/html", "Content-Security-Policy": "script-src *",
                    "X-Content-Type-Options": "none", "Service-Worker-Allowed": "/"},
        "cookies": ["session=1; Domain=127.0.0.1; Path=/; HttpOnly", "pref=2", "deep=3; Path=/app"],
        "body": "<script>document.title = 'ran'</script>"}))
    assert reply.status == 200, reply.body
    prefix = f"/lambda-url/{url_id}"
    assert reply.headers("set-cookie") == [f"session=1; HttpOnly; Path={prefix}", f"pref=2; Path={prefix}",
                                           f"deep=3; Path={prefix}/app"]
    assert reply.headers("content-security-policy") == ["script-src *", "sandbox"]   # both apply: no script
    assert reply.headers("x-content-type-options") == ["nosniff"]
    assert reply.header("service-worker-allowed") is None
    # Refusals on the shared origin are sandboxed too.
    denied = call(srv, url.replace(url_id, "0" * 32), style="path")
    assert denied.status == 403 and denied.header("content-security-policy") == "sandbox"


@pytest.mark.parametrize("style", ["host", "path"])
@pytest.mark.parametrize("description", [
    {"statusCode": 100}, {"statusCode": 101, "headers": {"Upgrade": "websocket", "Connection": "Upgrade"}},
    {"statusCode": 103, "headers": {"Link": "</x.css>; rel=preload"}},
    {"statusCode": 200, "headers": {"X-A": "1\r\nSet-Cookie: tossed=1; Domain=lambda-url.us-east-1.localhost"}},
    {"statusCode": 200, "cookies": ["a=1\r\n\r\n<script>x()</script>"]},
    {"statusCode": 200, "headers": {"Bad Name": "1"}}], ids=["100", "101", "103", "split", "cookie-split", "name"])
def test_unusable_response_is_502(srv, tenants, description, style):
    reply = call(srv, tenants["b"], query=answer(description), style=style)
    assert reply.status == 502, (reply.status, reply.header_list)
    assert reply.body == b"Internal Server Error" and reply.headers("set-cookie") == []


# ---------------------------------------------------------------------------------------------- a real browser

def _spki_pin(srv) -> str:
    """base64(sha256(SubjectPublicKeyInfo)) of the server's certificate, for Chromium to trust it."""
    port = urlsplit(srv.url).port
    ctx = ssl.create_default_context(cafile=srv.ca)
    with socket.create_connection(("127.0.0.1", port), 30) as sock, \
            ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    spki = x509.load_der_x509_certificate(der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def _browse(srv, tmp_path, url: str) -> str:
    """The DOM Chromium (headless) has once `url` is loaded, redirects followed and scripts run."""
    out = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile'}",
                          f"--ignore-certificate-errors-spki-list={_spki_pin(srv)}", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def _path_url(srv, url: str, query: str) -> str:
    return f"https://127.0.0.1:{urlsplit(srv.url).port}/lambda-url/{URL_RE.fullmatch(url)['id']}/?{query}"


SHOW_COOKIES = {"statusCode": 200, "headers": {"Content-Type": "text/html"},
                "body": "<body><pre id=out>not run</pre>"
                        "<script>document.getElementById('out').textContent = 'seen' + ':' + document.cookie</script>"
                        "</body>"}


def _shown(dom: str) -> str:
    """What the SHOW_COOKIES page's <pre> says: "not run", or "seen:<the cookies its script can read>"."""
    m = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)
    assert m, dom
    return m.group(1)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")
def test_browser_a_cookie_tossed_at_every_tenant_does_not_reach_another_account(srv, tenants, tmp_path):
    """Tenant A's page sets a cookie for the parent domain and sends the browser to tenant B's page, whose
    script shows the cookies it can see. B sees none of A's."""
    b_page = f"{tenants['b']}?{answer(SHOW_COOKIES)}"
    tossing = answer({"statusCode": 302, "headers": {"Location": b_page},
                      "cookies": [f"tossed=from-a; Domain={_parent(tenants['a'])}; Path=/; Secure",
                                  "mine=a; Path=/; Secure"]})
    shown = _shown(_browse(srv, tmp_path, f"{tenants['a']}?{tossing}"))
    assert shown == "seen:", shown        # B's script ran (a scripting browser) and saw no cookie of A's


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")
def test_browser_a_path_style_page_cannot_script_the_shared_origin(srv, tenants, tmp_path):
    """Tenant B's path-style URL stores a cookie on the shared origin; tenant A's path-style page tries
    to read it (and anything else of that origin): its script never runs."""
    setting = answer({"statusCode": 302, "headers": {"Location": _path_url(srv, tenants["a"], answer(SHOW_COOKIES))},
                      "cookies": ["b-session=secret; Path=/; Secure"]})
    assert _shown(_browse(srv, tmp_path, _path_url(srv, tenants["b"], setting))) == "not run"
    # The same page served host style runs (the check above is not a browser that never scripts).
    assert _shown(_browse(srv, tmp_path, f"{tenants['a']}?{answer(SHOW_COOKIES)}")) == "seen:"
