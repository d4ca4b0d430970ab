"""AWS-shaped errors. Every layer raises these; only api/ turns them into HTTP.

`code` is the AWS error code (the shape name in botocore's model), which becomes the
`x-amzn-ErrorType` header and lets boto3 raise its typed exception.
"""
from __future__ import annotations


class AwsError(Exception):
    code = "ServiceException"
    status = 500
    sender_fault = False

    def __init__(self, message: str = "", *, extra: dict | None = None, headers: dict | None = None):
        super().__init__(message)
        self.message = message
        self.extra = dict(extra or {})      # additional body members (e.g. Reason)
        self.headers = dict(headers or {})  # additional response headers (e.g. Retry-After)

    def __repr__(self) -> str:
        return f"{self.code}({self.message!r})"


def _error(code: str, status: int) -> type[AwsError]:
    return type(code, (AwsError,), {"code": code, "status": status, "sender_fault": status < 500})


ServiceException = _error("ServiceException", 500)
InvalidParameterValueException = _error("InvalidParameterValueException", 400)
InvalidRequestContentException = _error("InvalidRequestContentException", 400)
ResourceNotFoundException = _error("ResourceNotFoundException", 404)
ResourceConflictException = _error("ResourceConflictException", 409)
ResourceInUseException = _error("ResourceInUseException", 400)
PreconditionFailedException = _error("PreconditionFailedException", 412)
RequestTooLargeException = _error("RequestTooLargeException", 413)
TooManyRequestsException = _error("TooManyRequestsException", 429)
CodeStorageExceededException = _error("CodeStorageExceededException", 400)
InvalidRuntimeException = _error("InvalidRuntimeException", 502)
InvalidZipFileException = _error("InvalidZipFileException", 502)
ServiceQuotaExceededException = _error("ServiceQuotaExceededException", 400)

# Authentication failures: not in the Lambda model, but every AWS service answers these shapes.
InvalidSignatureException = _error("InvalidSignatureException", 403)
UnrecognizedClientException = _error("UnrecognizedClientException", 403)
IncompleteSignatureException = _error("IncompleteSignatureException", 403)
MissingAuthenticationTokenException = _error("MissingAuthenticationTokenException", 403)
AccessDeniedException = _error("AccessDeniedException", 403)
# Unknown routes and unknown services (AWS answers these with UnknownOperationException).
UnknownOperationException = _error("UnknownOperationException", 404)
SerializationException = _error("SerializationException", 400)
