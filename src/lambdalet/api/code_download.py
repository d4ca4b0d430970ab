"""Code.Location: GetFunction hands out a short-lived signed URL on this server (AWS hands out a
presigned S3 URL). The token, not SigV4, authenticates the download, so curl and browsers work."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lambdalet.crypto.errors import InvalidToken
from lambdalet.crypto.tokens import read_token

PATH = "/_lambdalet/code"


def code_route(keyring, blobs) -> Route:
    key = keyring.derive_key("code-url")

    async def download(request: Request) -> Response:
        try:
            claims = read_token(key, request.query_params.get("token", ""))
            data = await run_in_threadpool(blobs.get, claims["s"])
        except (InvalidToken, KeyError, TypeError, ValueError):
            return JSONResponse({"Type": "User", "message": "The code URL is invalid or has expired."}, status_code=403,
                                headers={"x-amzn-ErrorType": "AccessDeniedException"})
        return Response(data, media_type="application/zip")

    return Route(PATH, download, methods=["GET"])
