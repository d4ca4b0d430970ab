"""CloudWatch Logs' errors: `code` is the error shape name in botocore's `logs` model (what
`__type` carries and boto3 maps to `logs.exceptions.<Code>`). CloudWatch Logs answers every
client error with HTTP 400, ResourceNotFoundException included."""
from __future__ import annotations

from lambdalet.models.errors import AwsError


class LogsError(AwsError):
    code = "InvalidParameterException"
    status = 400
    sender_fault = True


class InvalidParameterException(LogsError):
    code = "InvalidParameterException"


class ResourceNotFoundException(LogsError):
    code = "ResourceNotFoundException"


class ResourceAlreadyExistsException(LogsError):
    code = "ResourceAlreadyExistsException"


class OperationAbortedException(LogsError):
    code = "OperationAbortedException"


class LimitExceededException(LogsError):
    code = "LimitExceededException"


class ServiceUnavailableException(LogsError):
    code, status, sender_fault = "ServiceUnavailableException", 500, False


GROUP_NOT_FOUND = "The specified log group does not exist."
STREAM_NOT_FOUND = "The specified log stream does not exist."
