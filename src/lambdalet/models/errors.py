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
# Not in Lambda's model, but what AWS answers for a request over an operation's size limit
# (CreateFunction's 70167211 bytes, Invoke's 6291456).
RequestEntityTooLargeException = _error("RequestEntityTooLargeException", 413)
TooManyRequestsException = _error("TooManyRequestsException", 429)
RecursiveInvocationException = _error("RecursiveInvocationException", 400)
CodeStorageExceededException = _error("CodeStorageExceededException", 400)
InvalidRuntimeException = _error("InvalidRuntimeException", 502)
InvalidZipFileException = _error("InvalidZipFileException", 502)
ServiceQuotaExceededException = _error("ServiceQuotaExceededException", 400)
# Not in Lambda's model: the request-validation layer in front of every AWS JSON service answers it
# when a member breaks its shape's constraints (min/max, pattern, enum, required).
ValidationException = _error("ValidationException", 400)


def render_value(value) -> str:
    """A value as AWS's validation messages print it (Java's toString): lists [a, b], maps {k=v}."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(render_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={render_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (bytes, bytearray)):
        return "java.nio.HeapByteBuffer"
    return str(value)


def constraint_text(value, field: str, rule: str, *, sensitive: bool = False) -> str:
    """One violation, worded as AWS words it: Value 'x' at 'field' failed to satisfy constraint: <rule>."""
    if sensitive:          # AWS never echoes a sensitive member's value
        shown = ""
    elif value is None:
        shown = " null"
    else:
        text = render_value(value)
        shown = f" '{text if len(text) <= 256 else text[:256] + '...'}'"
    return f"Value{shown} at '{field}' failed to satisfy constraint: {rule}"


def validation_error(violations: list[str]) -> AwsError:
    """AWS's ValidationException for one or more violations (each from constraint_text)."""
    n = len(violations)
    head = f"{n} validation error{'s' if n != 1 else ''} detected: "
    return ValidationException(head + "; ".join(violations))

# Authentication failures: not in the Lambda model, but every AWS service answers these shapes.
InvalidSignatureException = _error("InvalidSignatureException", 403)
UnrecognizedClientException = _error("UnrecognizedClientException", 403)
IncompleteSignatureException = _error("IncompleteSignatureException", 403)
MissingAuthenticationTokenException = _error("MissingAuthenticationTokenException", 403)
AccessDeniedException = _error("AccessDeniedException", 403)
# Unknown routes and unknown services (AWS answers these with UnknownOperationException).
UnknownOperationException = _error("UnknownOperationException", 404)
SerializationException = _error("SerializationException", 400)
