"""KMS's errors: `code` is the error shape name in botocore's KMS model (the `__type` it parses).
KMS answers every client error with HTTP 400 (KMSInternalException is its 500)."""
from __future__ import annotations

from lambdalet.models.errors import AwsError


class KmsError(AwsError):
    code = "ValidationException"
    status = 400
    sender_fault = True


def _kms(code: str, status: int = 400) -> type[KmsError]:
    return type(code, (KmsError,), {"code": code, "status": status, "sender_fault": status < 500})


NotFoundException = _kms("NotFoundException")
DisabledException = _kms("DisabledException")
KMSInvalidStateException = _kms("KMSInvalidStateException")
InvalidCiphertextException = _kms("InvalidCiphertextException")
IncorrectKeyException = _kms("IncorrectKeyException")
AlreadyExistsException = _kms("AlreadyExistsException")
InvalidAliasNameException = _kms("InvalidAliasNameException")
InvalidArnException = _kms("InvalidArnException")
InvalidMarkerException = _kms("InvalidMarkerException")
MalformedPolicyDocumentException = _kms("MalformedPolicyDocumentException")
UnsupportedOperationException = _kms("UnsupportedOperationException")
InvalidKeyUsageException = _kms("InvalidKeyUsageException")
TagException = _kms("TagException")
LimitExceededException = _kms("LimitExceededException")
DryRunOperationException = _kms("DryRunOperationException", 412)
KMSInternalException = _kms("KMSInternalException", 500)
# Not modelled, but what KMS answers (boto3 raises a ClientError with this code).
ValidationException = _kms("ValidationException")
AccessDeniedException = _kms("AccessDeniedException")
