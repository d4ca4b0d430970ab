"""Deployment packages: take the zip from the request, check it fully, then (and only then) store it.

Nothing is written before every check has passed: a refused package leaves no blob and no row.
"""
from __future__ import annotations

import hashlib

import sqlalchemy as sa

from lambdalet.codepkg.zipcheck import ZIPPED_UPLOAD_LIMIT, check_zipped_size, inspect_zip
from lambdalet.models.errors import CodeStorageExceededException, InvalidParameterValueException
from lambdalet.services.arns import Scope
from lambdalet.store import schema

TOTAL_CODE_SIZE_LIMIT = 80_530_636_800       # 75 GB per account and region, as AWS
UNZIPPED_SIZE_LIMIT = 262_144_000
ZIPPED_SIZE_LIMIT = ZIPPED_UPLOAD_LIMIT

_ZIP_ONLY = ("lambdalet accepts function code only as a .zip upload in {member} "
             "(S3Bucket/S3Key/S3ObjectVersion and ImageUri are not supported).")


def zip_from(members: dict | None, *, where: str) -> bytes:
    """The ZipFile bytes from Code (CreateFunction) or the request (UpdateFunctionCode)."""
    members = members or {}
    for other in ("S3Bucket", "S3Key", "S3ObjectVersion", "ImageUri"):
        if members.get(other):
            raise InvalidParameterValueException(_ZIP_ONLY.format(member=where))
    data = members.get("ZipFile")
    if data is None:
        raise InvalidParameterValueException(f"Please provide a source for function code: {where} is required "
                                             "(lambdalet accepts zip uploads only).")
    if not isinstance(data, (bytes, bytearray)):
        raise InvalidParameterValueException(f"{where} must be binary data.")
    return bytes(data)


def check_package(data: bytes, operation: str) -> str:
    """Validate the zip (size, structure, hostile entries) -> sha256 hex. Raises, writes nothing."""
    check_zipped_size(len(data), operation, ZIPPED_SIZE_LIMIT)
    inspect_zip(data, operation=operation)
    return hashlib.sha256(data).hexdigest()


def code_usage(conn, scope: Scope) -> int:
    """Bytes of code stored for the account in this region (every version counts, as in AWS)."""
    f, v = schema.functions, schema.function_versions
    total = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(v.c.code_size), 0))
                         .select_from(v.join(f, v.c.function_id == f.c.id))
                         .where(f.c.account_id == scope.account_id, f.c.region == scope.region)).scalar()
    return int(total or 0)


def check_storage(conn, scope: Scope, extra: int) -> None:
    if code_usage(conn, scope) + extra > TOTAL_CODE_SIZE_LIMIT:
        raise CodeStorageExceededException("Code storage limit exceeded.")
