"""One API call -> one CloudTrail record (eventVersion 1.09 fields), with secrets redacted.

Rules, as CloudTrail applies them:
- Management vs data events: for Lambda, Invoke / InvokeAsync / InvokeWithResponseStream are data
  events; for SQS the message operations are. Everything else is a management event. Data events
  are only recorded when the recorder is built with `data_events=True` (CloudTrail's default is
  the same: data events cost extra and must be enabled per trail). LookupEvents returns
  management events only.
- eventSource is `<service>.amazonaws.com`; Lambda's management eventNames carry the API version
  of the operation's URI, as CloudTrail writes them (`CreateFunction20150331`,
  `UpdateFunctionCode20150331v2`); data events use the bare name (`Invoke`).
- requestParameters / responseElements are walked with botocore's shape of the operation: keys of
  structures are written lowerCamelCase as CloudTrail does (`functionName`, `kMSKeyArn`); map keys
  are kept; members whose shape has the `sensitive` trait (Lambda's Environment.Variables, its
  names and values) become "HIDDEN_DUE_TO_SECURITY_REASONS"; blobs (Code.ZipFile, Payload) are
  omitted. A name-based rule backs this up for unmodelled values (SecretAccessKey, SessionToken,
  Password, PrivateKey, message bodies, Code.Location URLs, ...).
- responseElements are recorded only for calls that change state (not for Get/List/Describe), and
  never for failed calls; errorCode/errorMessage are recorded instead.
- Refused calls (authentication failures) have no verified identity: userIdentity is
  `{"type": "Unknown", "accessKeyId": <the key the request claimed>}` and no requestParameters.
"""
from __future__ import annotations

import datetime as dt
import re
import uuid
from functools import lru_cache
from typing import Any

EVENT_VERSION = "1.09"
HIDDEN = "HIDDEN_DUE_TO_SECURITY_REASONS"

DATA_EVENTS: dict[str, frozenset[str]] = {
    "lambda": frozenset({"Invoke", "InvokeAsync", "InvokeWithResponseStream"}),
    "sqs": frozenset({"SendMessage", "SendMessageBatch", "ReceiveMessage", "DeleteMessage", "DeleteMessageBatch",
                      "ChangeMessageVisibility", "ChangeMessageVisibilityBatch"}),
    # CloudWatch Logs: reading and writing log events is not a management event.
    "logs": frozenset({"PutLogEvents", "GetLogEvents", "FilterLogEvents", "GetLogRecord", "GetQueryResults"}),
}
_READ_PREFIXES = ("Get", "List", "Describe", "Lookup", "Head")
_READ_ONLY_EXTRA = frozenset({"ReceiveMessage"})

# Lambda operations whose CloudTrail eventName ends in "v2" (the rest: name + URI date).
_LAMBDA_V2 = frozenset({"UpdateFunctionCode", "UpdateFunctionConfiguration", "GetFunction",
                        "GetFunctionConfiguration", "AddPermission", "RemovePermission", "GetPolicy"})
_VERSIONED_NAME = re.compile(r"^(?P<base>[A-Za-z]+?)(?P<ver>\d{8}(?:v\d+)?)$")

# Member names redacted whatever their shape says (defence in depth for unmodelled values).
_HIDE_NAMES = frozenset({"SecretAccessKey", "SessionToken", "Password", "PrivateKey", "Secret", "ClientSecret",
                         "MessageBody", "MessageAttributes", "MessageSystemAttributes", "Messages", "Variables"})
_OMIT_NAMES = frozenset({"ZipFile", "Payload", "Location"})   # Location: Code.Location is a download URL

# Lookup resource per service: (resource type, the request member naming it).
_RESOURCES = {
    "lambda": ("AWS::Lambda::Function", ("FunctionName", "Resource")),
    "sqs": ("AWS::SQS::Queue", ("QueueUrl", "QueueName")),
}


def is_data_event(service: str | None, operation: str | None) -> bool:
    return bool(operation) and operation in DATA_EVENTS.get(service or "", ())


def is_read_only(operation: str | None) -> bool:
    op = operation or ""
    return op.startswith(_READ_PREFIXES) or op in _READ_ONLY_EXTRA


def base_event_name(event_name: str) -> str:
    """`CreateFunction20150331` -> `CreateFunction` (names without a version are returned as given)."""
    m = _VERSIONED_NAME.match(event_name or "")
    return m["base"] if m else event_name


def event_name(service: str | None, operation: str | None) -> str:
    if not operation:
        return "Unknown"
    if service != "lambda" or is_data_event(service, operation):
        return operation
    op = _operation_model(service, operation)
    uri = op.http.get("requestUri", "") if op is not None else ""
    m = re.match(r"^/(\d{4})-(\d{2})-(\d{2})/", uri)
    if not m:
        return operation
    return operation + "".join(m.groups()) + ("v2" if operation in _LAMBDA_V2 else "")


def format_time(epoch: float) -> str:
    return dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp()


# ---- identity ----

def user_identity(caller: Any | None, access_key_id: str | None) -> dict:
    """CloudTrail's userIdentity for an authenticated caller (a models.context.Caller), or for a
    refused request (only the access key it claimed is known)."""
    if caller is None:
        out: dict[str, Any] = {"type": "Unknown"}
        if access_key_id:
            out["accessKeyId"] = access_key_id
        return out
    arn = caller.principal_arn or ""
    account = caller.account_id
    principal = caller.user_id or ""
    out = {"type": "IAMUser", "principalId": principal, "arn": arn, "accountId": account,
           "accessKeyId": caller.access_key_id}
    resource = arn.split(":", 5)[5] if arn.count(":") >= 5 else ""
    if resource == "root":
        out.update(type="Root", principalId=account)
    elif resource.startswith("assumed-role/"):
        parts = resource.split("/")
        role, session = (parts[1] if len(parts) > 1 else ""), (parts[2] if len(parts) > 2 else "")
        out.update(type="AssumedRole", principalId=f"{principal}:{session}" if principal else session)
        out["sessionContext"] = {"sessionIssuer": {"type": "Role", "principalId": principal,
                                                   "arn": f"arn:aws:iam::{account}:role/{role}",
                                                   "accountId": account, "userName": role}}
    elif resource.startswith("user/"):
        out["userName"] = resource.rsplit("/", 1)[-1]
    return out


def lookup_username(identity: dict) -> str:
    """LookupEvents' Username: the user name, the role session name, or "root"."""
    t = identity.get("type")
    if t == "Root":
        return "root"
    if t == "AssumedRole":
        return str(identity.get("principalId", "")).rpartition(":")[2]
    return str(identity.get("userName", ""))


# ---- redaction ----

@lru_cache(maxsize=8)
def _service_model(service: str):
    from lambdalet.models.service_model import load_service_model   # botocore's model, loaded once per service
    return load_service_model(service)


@lru_cache(maxsize=1024)
def _operation_model(service: str, operation: str):
    try:
        return _service_model(service).operation_model(operation)
    except Exception:   # unknown service or operation: no shape, the name rules still apply
        return None


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _scalar(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, float) and value != value:   # NaN has no canonical JSON
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


_OMIT = object()


def redact(value: Any, shape: Any = None, name: str = "") -> Any:
    """A JSON-safe copy of `value` with secrets hidden and blobs omitted (`_OMIT` at the top)."""
    if name in _OMIT_NAMES or isinstance(value, (bytes, bytearray, memoryview)):
        return _OMIT
    if name in _HIDE_NAMES or (shape is not None and shape.metadata.get("sensitive")):
        return HIDDEN
    t = shape.type_name if shape is not None else None
    if t == "blob":
        return _OMIT
    if isinstance(value, dict):
        out = {}
        if t == "map":
            for k, v in value.items():
                r = redact(v, shape.value)
                if r is not _OMIT:
                    out[str(k)] = r
            return out
        members = shape.members if t == "structure" and not shape.is_document_type else None
        for k, v in value.items():
            member = members.get(k) if members is not None else None
            if members is not None and (member is None or member.serialization.get("location") == "statusCode"):
                continue   # not in the model (so not on the wire either), or the HTTP status
            r = redact(v, member, str(k))
            if r is not _OMIT and r is not None:
                out[_camel(str(k)) if members is not None else str(k)] = r
        return out
    if isinstance(value, (list, tuple)):
        inner = shape.member if t == "list" else None
        return [r for r in (redact(v, inner) for v in value) if r is not _OMIT]
    return _scalar(value)


def _redacted_top(value: Any, shape: Any) -> dict | None:
    if value is None:
        return None
    r = redact(value, shape)
    return r if isinstance(r, dict) else None


def _resource(service: str | None, params: dict | None, region: str, account: str) -> tuple[str, str]:
    rtype, members = _RESOURCES.get(service or "", ("", ()))
    for m in members:
        v = (params or {}).get(m)
        if isinstance(v, str) and v:
            if service == "lambda" and m == "FunctionName" and not v.startswith("arn:") and account:
                v = f"arn:aws:lambda:{region}:{account}:function:{v}"
            return rtype, v
    return "", ""


# ---- the record ----

def build_record(*, service: str | None, operation: str | None, caller: Any | None, params: dict | None,
                 result: dict | None, error: BaseException | None, source_ip: str, user_agent: str,
                 access_key_id: str | None, request_id: str | None, region: str | None, event_time: float,
                 account_id: str | None = None, event_id: str | None = None) -> dict:
    """The CloudTrail record for one call. `account_id` overrides the recipient account (refused
    calls whose claimed key is known); otherwise it is the caller's."""
    op = _operation_model(service, operation) if service and operation else None
    data = is_data_event(service, operation)
    read_only = is_read_only(operation)
    account = account_id if account_id is not None else (caller.account_id if caller is not None else "")
    region = region or ""
    record: dict[str, Any] = {
        "eventVersion": EVENT_VERSION,
        "userIdentity": user_identity(caller, access_key_id),
        "eventTime": format_time(event_time),
        "eventSource": f"{service}.amazonaws.com" if service else "unknown.amazonaws.com",
        "eventName": event_name(service, operation),
        "awsRegion": region,
        "sourceIPAddress": source_ip or "",
        "userAgent": user_agent or "",
    }
    if error is not None:
        code = getattr(error, "code", None)
        if code:
            record["errorCode"] = code
            record["errorMessage"] = str(getattr(error, "message", "") or "")[:1024]
        else:   # an unexpected exception: what the client was told, never the internals
            record["errorCode"] = "ServiceException"
            record["errorMessage"] = "An internal error occurred."
    record["requestParameters"] = (_redacted_top(params, op.input_shape if op else None)
                                   if caller is not None else None)
    has_output = op is None or op.output_shape is not None
    record["responseElements"] = ((_redacted_top(result, op.output_shape if op else None) or None)
                                  if error is None and not read_only and result and has_output else None)
    record["requestID"] = request_id or ""
    record["eventID"] = event_id or str(uuid.uuid4())
    record["readOnly"] = read_only
    rtype, rname = _resource(service, params if caller is not None else None, region, account)
    if rtype:
        record["resources"] = [{"type": rtype, "ARN": rname, "accountId": account}]
    record["eventType"] = "AwsApiCall"
    record["managementEvent"] = not data
    record["recipientAccountId"] = account
    record["eventCategory"] = "Data" if data else "Management"
    return record


def index_columns(record: dict) -> dict:
    """The plaintext lookup columns of `audit_events`, derived from the record alone (so `audit
    verify` can check them against the sealed record)."""
    identity = record.get("userIdentity") or {}
    resources = record.get("resources") or []
    first = resources[0] if resources else {}
    return {
        "event_id": str(record.get("eventID", "")),
        "event_time": parse_time(record["eventTime"]),
        "account_id": str(record.get("recipientAccountId", ""))[:12],
        "category": str(record.get("eventCategory", "")),
        "event_source": str(record.get("eventSource", ""))[:64],
        "event_name": str(record.get("eventName", ""))[:128],
        "read_only": bool(record.get("readOnly")),
        "username": lookup_username(identity)[:128],
        "access_key_id": str(identity.get("accessKeyId", ""))[:32],
        "resource_type": str(first.get("type", ""))[:64],
        "resource_name": str(first.get("ARN", ""))[:2048],
    }
