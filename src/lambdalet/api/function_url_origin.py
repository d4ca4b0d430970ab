"""Function URLs in browsers: what a function's response may do to the origin it is served from. Pure.

Host style (`<url-id>.lambda-url.<region>.localhost`, the FunctionUrl the API reports) gives every URL
an origin of its own, as AWS's per-URL subdomains of `lambda-url.<region>.on.aws` are. AWS's parent
domains are on the Public Suffix List, so browsers refuse a cookie one URL scopes to them; ours under
`.localhost` are not, so `host_style` drops every Set-Cookie whose Domain attribute is not the URL's
own host (e.g. `Domain=lambda-url.us-east-1.localhost` would reach every tenant's URL).

Path style (`https://<host>:<port>/lambda-url/<url-id>/...`) is a fallback for clients that cannot
resolve `*.localhost`: every URL and the API share one origin there, so `path_style` makes a response
harmless to a browser that opens it anyway: `Content-Security-Policy: sandbox` (an HTML page runs in
an opaque origin: no script, no access to the shared origin's storage), `X-Content-Type-Options:
nosniff`, no `Service-Worker-Allowed`, and every cookie host-only (Domain removed) with its Path
moved under the URL's own prefix (the function's `Path=/a` becomes `/lambda-url/<url-id>/a`), so no
URL can set or shadow another's cookies, or the API's.
"""
from __future__ import annotations

from lambdalet.api.function_url_payload import HttpResult

PATH_PREFIX = "/lambda-url"
# Added after the function's own CSP header, which cannot lift it: every policy sent is enforced.
SANDBOX_CSP = "sandbox"
_SET_COOKIE = frozenset({"set-cookie", "set-cookie2"})


def _split(cookie: str) -> tuple[str, list[tuple[str, str, str]]]:
    """(name=value, [(attribute name lower-cased, its value, the attribute as written)])."""
    first, *rest = cookie.split(";")
    attrs = []
    for raw in rest:
        raw = raw.strip()
        if raw:
            name, _, value = raw.partition("=")
            attrs.append((name.strip().lower(), value.strip(), raw))
    return first.strip(), attrs


def _domain_is(value: str, host: str) -> bool:
    # RFC 6265 5.2.3: a leading dot is ignored; an empty value is no Domain attribute at all.
    value = value.lower().lstrip(".")
    return value == "" or value == host


def host_style(result: HttpResult, host: str) -> HttpResult:
    """Drops cookies scoped beyond the URL's own host."""
    host = host.lower()
    kept = []
    for name, value in result.headers:
        if name in _SET_COOKIE:
            if name == "set-cookie2":
                continue                  # obsolete (RFC 2965), never needed
            _, attrs = _split(value)
            if not all(_domain_is(v, host) for a, v, _ in attrs if a == "domain"):
                continue
        kept.append((name, value))
    result.headers = kept
    return result


def _confine_cookie(cookie: str, prefix: str) -> str:
    pair, attrs = _split(cookie)
    path = next((v for a, v, _ in reversed(attrs) if a == "path"), "")   # the last Path wins (RFC 6265)
    if not path.startswith("/") or path == "/":
        path = ""                     # the URL's root; a missing Path would default to a parent directory
    kept = [raw for a, _, raw in attrs if a not in ("domain", "path")]
    return "; ".join([pair, *kept, f"Path={prefix}{path}"])


def path_style(result: HttpResult, url_id: str) -> HttpResult:
    """Makes a response served on the shared origin inert in a browser (see the module's docstring)."""
    prefix = f"{PATH_PREFIX}/{url_id}"
    out = []
    for name, value in result.headers:
        if name == "set-cookie":
            out.append((name, _confine_cookie(value, prefix)))
        elif name not in ("set-cookie2", "service-worker-allowed", "x-content-type-options"):
            out.append((name, value))
    out += [("content-security-policy", SANDBOX_CSP), ("x-content-type-options", "nosniff")]
    result.headers = out
    return result
