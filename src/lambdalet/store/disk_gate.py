"""Which API calls a critically full data disk refuses, and in which shape (store/headroom.py).

Refused: calls that add state (Create*, Put*, Update*, Publish*, Send*, Tag*, Event invokes, ...).
Still served: reads (Get/List/Describe/Lookup/Filter), calls that free space or only consume
(Delete*, Purge*, Remove*, Untag*, ReceiveMessage, ChangeMessageVisibility), synchronous invokes
(their logs are dropped), KMS cryptography and STS (a session row is small, and reads through an
assumed role need one). Their audit records and SQLite's WAL are what the headroom below the
critical mark is for.

The answer is the throttling error each service's SDK retries by itself, in both botocore retry
modes ("legacy", boto3's default, and "standard"), never a 500:
- Lambda: 429 TooManyRequestsException (Reason CallerRateLimitExceeded, Retry-After), as its quota
  refusals are;
- SQS: RequestThrottled, modelled on SendMessage; 403 as botocore's SQS retry rule expects it;
- Scheduler: its modelled 429 ThrottlingException;
- other JSON services: 400 ThrottlingException; query services (IAM): 400 Throttling.
"""
from __future__ import annotations

from typing import Any, Mapping

from lambdalet.models.errors import AwsError
from lambdalet.store.headroom import MiB, DiskHeadroom

RETRY_AFTER_S = 5
_READ_PREFIXES = ("Get", "List", "Describe", "Lookup", "Filter", "Head", "Test", "Search")
_FREEING_PREFIXES = ("Delete", "Purge", "Remove", "Untag", "Cancel", "Receive", "ChangeMessageVisibility")
_KMS_CRYPTO = ("Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey", "GenerateRandom", "Sign", "Verify",
               "GenerateMac", "VerifyMac")
_QUERY_SERVICES = ("iam", "sts")


class DiskFullThrottle(AwsError):
    status, sender_fault = 400, True


def changes_state(service: str | None, operation: str | None, params: Mapping[str, Any] | None) -> bool:
    if not operation or service == "sts":
        return False
    if operation.startswith(_READ_PREFIXES + _FREEING_PREFIXES):
        return False
    if service == "kms" and operation.startswith(_KMS_CRYPTO):
        return False
    if service == "lambda" and operation == "Invoke":
        return (params or {}).get("InvocationType") == "Event"     # durable enqueue; sync and DryRun write nothing
    return True


def payload_bytes(params: Mapping[str, Any] | None) -> int:
    """The bytes a call brings to store (a zip, a layer, a message), as far as its parameters show."""
    total = 0
    for value in (params or {}).values():
        if isinstance(value, (bytes, str)):
            total += len(value)
        elif isinstance(value, Mapping):
            total += sum(len(v) for v in value.values() if isinstance(v, (bytes, str)))
        elif isinstance(value, list):
            total += sum(payload_bytes(v) if isinstance(v, Mapping) else 0 for v in value)
    return total


def refusal(service: str | None, headroom: DiskHeadroom) -> AwsError:
    message = (f"Rate exceeded: the platform's data disk is nearly full ({headroom.state.free_bytes // MiB} MiB "
               f"free), so calls that store data are refused until space is freed. Retry later.")
    err = DiskFullThrottle(message)
    if service == "lambda":
        err.code, err.status = "TooManyRequestsException", 429
        err.extra = {"Reason": "CallerRateLimitExceeded"}
        err.headers = {"Retry-After": str(RETRY_AFTER_S)}
    elif service == "sqs":
        err.code, err.status = "RequestThrottled", 403
        err.query_code = "RequestThrottled"
    elif service == "scheduler":
        err.code, err.status = "ThrottlingException", 429
    elif service in _QUERY_SERVICES:
        err.code = "Throttling"
    else:
        err.code = "ThrottlingException"
    return err


class DiskGate:
    """Called for every authorized API call before it runs; raises the refusal when it must wait."""

    def __init__(self, headroom: DiskHeadroom):
        self.headroom = headroom

    def admit(self, service: str | None, operation: str | None, params: Mapping[str, Any] | None) -> None:
        if not changes_state(service, operation, params):
            return
        if not self.headroom.writes_accepted(payload_bytes(params)):
            self.headroom.count_refused()
            raise refusal(service, self.headroom)


def admitting(authorize, gate: DiskGate):
    """ApiApp's `authorize` step followed by the gate: a refused caller still gets AccessDenied first."""
    def authorize_then_admit(service, operation, params, ctx):
        ctx = authorize(service, operation, params, ctx) if authorize is not None else ctx
        gate.admit(service, operation, params)
        return ctx
    return authorize_then_admit
