"""Code.Location: GetFunction hands out a short-lived signed URL on this server (AWS hands out a
presigned S3 URL). The token, not SigV4, authenticates the download, so curl and browsers work.

A token names what it was issued for, and is honoured only while that still holds (issue 21.9): a
function's package (`i` the function's internal id, unique per creation, `v` its version) while that
version exists with that code (`s`, CodeSha256), so updating the code or deleting the function or
version ends it at once, not 10 minutes later; a layer version's content (`l`) while it exists.
A refused download is S3's answer to a presigned URL it will not serve: 403 `AccessDenied` (XML).

A package sealed under a SourceKMSKeyArn is opened with that key (the token names it and the function);
if the key was disabled since GetFunction, the download fails with Lambda's KMS error."""
from __future__ import annotations

import uuid
from xml.sax.saxutils import escape

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lambdalet.api.protocol import generic_error
from lambdalet.crypto.errors import InvalidToken
from lambdalet.crypto.tokens import read_token
from lambdalet.models.errors import AwsError
from lambdalet.store.layer_tables import layer_versions as LV
from lambdalet.store.schema import function_versions as V

PATH = "/_lambdalet/code"


class _Gone(Exception):
    """The token is genuine, but what it was issued for has changed or is gone."""


def _still_current(db, claims: dict) -> bool:
    sha = claims["s"]
    with db.read() as conn:
        if "i" in claims:
            row = conn.execute(sa.select(V.c.code_sha256).where(V.c.function_id == claims["i"],
                                                                  V.c.version == claims["v"])).first()
        elif "l" in claims:
            row = conn.execute(sa.select(LV.c.code_sha256).where(LV.c.id == claims["l"])).first()
        else:
            return False          # a token bound to nothing (issued before binding) is not honoured
    return row is not None and row.code_sha256 == sha


def access_denied(message: str) -> Response:
    """S3's error document for a presigned URL it refuses."""
    request_id = uuid.uuid4().hex[:16].upper()
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>AccessDenied</Code><Message>{escape(message)}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>")
    return Response(body, status_code=403, media_type="application/xml",
                    headers={"x-amz-request-id": request_id})


def code_route(keyring, blobs, code_keys=None, db=None) -> Route:
    """`code_keys` (kms.FunctionKeys) opens SourceKMSKeyArn packages; without it they are refused.
    `db` answers whether a token's function version or layer version still has that code; without it
    (unit harnesses) no download is served."""
    key = keyring.derive_key("code-url")

    def fetch(claims: dict) -> bytes:
        if db is None or not _still_current(db, claims):
            raise _Gone()
        sealer = None
        if claims.get("k"):
            if code_keys is None:
                raise KeyError("no KMS to open this package")
            sealer = code_keys.code_sealer(claims["k"], claims["f"])
        return blobs.get(claims["s"], sealer)

    async def download(request: Request) -> Response:
        try:
            claims = read_token(key, request.query_params.get("token", ""))
            data = await run_in_threadpool(fetch, claims)
        except AwsError as e:
            wire = generic_error(e)
            return Response(wire.body, status_code=wire.status, headers=wire.headers)
        except InvalidToken as e:
            return access_denied("Request has expired" if str(e) == "token expired" else "Access Denied")
        except (_Gone, KeyError, TypeError, ValueError):
            return access_denied("Access Denied")
        return Response(data, media_type="application/zip")

    return Route(PATH, download, methods=["GET"])
