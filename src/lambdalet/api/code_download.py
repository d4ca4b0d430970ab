"""Code.Location: GetFunction hands out a short-lived signed URL on this server (AWS hands out a
presigned S3 URL). The token, not SigV4, authenticates the download, so curl and browsers work.

A package sealed under a SourceKMSKeyArn is opened with that key (the token names it and the function);
if the key was disabled since GetFunction, the download fails with Lambda's KMS error."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lambdalet.api.protocol import generic_error
from lambdalet.crypto.errors import InvalidToken
from lambdalet.crypto.tokens import read_token
from lambdalet.models.errors import AwsError

PATH = "/_lambdalet/code"


def code_route(keyring, blobs, code_keys=None) -> Route:
    """`code_keys` (kms.FunctionKeys) opens SourceKMSKeyArn packages; without it they are refused."""
    key = keyring.derive_key("code-url")

    def fetch(claims: dict) -> bytes:
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
        except (InvalidToken, KeyError, TypeError, ValueError):
            return JSONResponse({"Type": "User", "message": "The code URL is invalid or has expired."}, status_code=403,
                                headers={"x-amzn-ErrorType": "AccessDeniedException"})
        return Response(data, media_type="application/zip")

    return Route(PATH, download, methods=["GET"])
