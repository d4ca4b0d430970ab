"""IAM and STS errors: the codes and HTTP statuses of botocore's iam/sts models (awsQuery wire codes)."""
from __future__ import annotations

from lambdalet.models.errors import AwsError


def _error(code: str, status: int) -> type[AwsError]:
    return type(code, (AwsError,), {"code": code, "status": status, "sender_fault": status < 500})


NoSuchEntity = _error("NoSuchEntity", 404)
EntityAlreadyExists = _error("EntityAlreadyExists", 409)
DeleteConflict = _error("DeleteConflict", 409)
LimitExceeded = _error("LimitExceeded", 409)
MalformedPolicyDocument = _error("MalformedPolicyDocument", 400)
InvalidInput = _error("InvalidInput", 400)
UnmodifiableEntity = _error("UnmodifiableEntity", 400)
ValidationError = _error("ValidationError", 400)
ServiceFailure = _error("ServiceFailure", 500)
AccessDenied = _error("AccessDenied", 403)           # IAM and STS spell it without "Exception"
ExpiredToken = _error("ExpiredToken", 400)


class ExpiredTokenException(AwsError):
    """A session key past its expiry (JSON/rest-json services; query services read `query_code`)."""
    code, status, sender_fault, query_code = "ExpiredTokenException", 403, True, "ExpiredToken"
