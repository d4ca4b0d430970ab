"""Where an event source mapping's messages come from: one small interface, two implementations.

    QueueSource            claim / ack / ack_many / nack / visibility_timeout / attributes
    InternalQueueSource    lambdalet's own QueueService (internal claim/ack/nack; no HTTP)
    ExternalSqsSource      any SQS-compatible endpoint, with botocore's SQS client: ReceiveMessage
                           (long poll), DeleteMessageBatch, ChangeMessageVisibility, GetQueueAttributes
    EventSources           picks the source of a queue ARN: an external endpoint whose rule matches
                           the ARN (see SqsEndpointRegistry), else lambdalet's own queues

The poller (esm_poller.MappingPoller) only sees a QueueSource, so batching, filters, partial batch
failures and scaling are the same whatever the source. An ExternalSqsSource is bound to ONE queue
(a receipt handle alone does not say which queue it belongs to), so `EventSources.for_arn` is asked
once per mapping.

External endpoints (`lambdalet sources add-sqs-endpoint`, docs/event-sources.md) live in
`<data dir>/sqs-endpoints.json`: a rule (an account + region, or a queue ARN prefix), the URL, an
optional CA bundle (copied into `<data dir>/sqs-endpoints/<name>.pem`), the lambdalet accounts
allowed to use it, and the credentials SEALED with the platform keyring (AES-GCM, AAD names the
endpoint): the access key id and secret are never in plain text in the data dir. The server re-reads
the file when it changes, so endpoints can be added while it runs.
"""
from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol

from lambdalet.models.errors import AwsError, ServiceException

log = logging.getLogger("lambdalet.esm")

ENDPOINTS_FILE = "sqs-endpoints.json"
CA_DIR = "sqs-endpoints"
MAX_RECEIVE = 10
MAX_WAIT_S = 20
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_ACCOUNT_RE = re.compile(r"^\d{12}$")
_REGION_RE = re.compile(r"^[a-z0-9-]{1,32}$")
_AAD = b"lambdalet-sqs-endpoint:"


class QueueSource(Protocol):
    def claim(self, arn: str, max_n: int, visibility_s: int, wait_s: float) -> list: ...
    def ack(self, receipt: str) -> bool: ...
    def nack(self, receipt: str, delay_s: float = 0) -> None: ...
    def visibility_timeout(self, arn: str) -> int: ...
    # optional: ack_many(receipts) -> None (one round trip for a batch), attributes(arn, names) -> dict


def parse_sqs_arn(arn: str) -> tuple[str, str, str] | None:
    """arn:aws:sqs:<region>:<account>:<name> -> (region, account, name)."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or not parts[1].startswith("aws") or parts[2] != "sqs":
        return None
    return parts[3], parts[4], parts[5]


def service_context(account_id: str, region: str):
    """The identity the platform's pollers act with (Lambda's service principal, in the mapping's account)."""
    import uuid

    from lambdalet.models.context import Caller, RequestContext
    caller = Caller(account_id=account_id, principal_arn=f"arn:aws:sts::{account_id}:assumed-role/lambdalet-esm",
                    access_key_id="", user_id="lambdalet-esm")
    return RequestContext(caller=caller, region=region, request_id=str(uuid.uuid4()), base_url="")


# ------------------------------------------------------------------------------ lambdalet's own queues

class InternalQueueSource:
    """QueueSource over lambdalet's QueueService (internal claim/ack/nack; attributes via its API)."""

    def __init__(self, queues, cache_s: float = 5.0):
        self.queues = queues
        self.cache_s = cache_s
        self._vt: dict[str, tuple[float, int]] = {}

    def claim(self, arn: str, max_n: int, visibility_s: int, wait_s: float) -> list:
        return self.queues.claim(arn, max_n, visibility_s, wait_s)

    def ack(self, receipt: str) -> bool:
        return self.queues.ack(receipt)

    def ack_many(self, receipts: Iterable[str]) -> None:
        try:
            self.queues.settle(acks=list(receipts))      # one transaction for the batch
        except Exception:
            log.exception("a delete failed (the messages come back after their visibility timeout)")

    def nack(self, receipt: str, delay_s: float = 0) -> None:
        self.queues.nack(receipt, delay_s)

    def attributes(self, arn: str, names: list[str]) -> dict[str, str]:
        region, account, name = parse_sqs_arn(arn) or ("", "", "")
        ctx = service_context(account, region)
        return self.queues.get_queue_attributes(ctx, {"QueueUrl": f"{account}/{name}",
                                                      "AttributeNames": names}).get("Attributes", {})

    def visibility_timeout(self, arn: str) -> int:
        now = time.monotonic()
        hit = self._vt.get(arn)
        if hit and now - hit[0] < self.cache_s:
            return hit[1]
        vt = int(self.attributes(arn, ["VisibilityTimeout"]).get("VisibilityTimeout", "30"))
        self._vt[arn] = (now, vt)
        return vt


# ------------------------------------------------------------------------------ endpoint configuration

@dataclass(frozen=True)
class SqsEndpoint:
    name: str
    url: str
    account: str | None = None              # rule: this account (and region, unless None = any region)
    region: str | None = None
    arn_prefix: str | None = None           # or rule: queue ARNs starting with this
    ca_bundle: str | None = None            # path of the PEM file (in the data dir)
    allowed_accounts: tuple[str, ...] = ("*",)   # lambdalet accounts whose mappings may use it
    access_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)
    session_token: str | None = field(default=None, repr=False)

    def specificity(self, arn: str) -> int:
        """> 0 when the rule matches the queue ARN; longer prefixes and exact regions win."""
        parsed = parse_sqs_arn(arn)
        if parsed is None:
            return 0
        region, account, _ = parsed
        if self.arn_prefix:
            return 1000 + len(self.arn_prefix) if arn.startswith(self.arn_prefix) else 0
        if self.account and self.account == account:
            if self.region is None:
                return 10
            return 20 if self.region == region else 0
        return 0

    def allows(self, lambdalet_account: str) -> bool:
        return "*" in self.allowed_accounts or lambdalet_account in self.allowed_accounts

    def public_view(self) -> dict:
        out: dict[str, Any] = {"name": self.name, "url": self.url}
        if self.arn_prefix:
            out["queue_arn_prefix"] = self.arn_prefix
        else:
            out["account"] = self.account
            out["region"] = self.region or "*"
        out["ca_bundle"] = self.ca_bundle
        out["allowed_accounts"] = list(self.allowed_accounts)
        out["access_key"] = (self.access_key[:4] + "…") if self.access_key else ""
        return out

    @property
    def fingerprint(self) -> tuple:
        return (self.url, self.ca_bundle, self.access_key, self.secret_key, self.session_token)


class SqsEndpointRegistry:
    """The configured external endpoints of one data dir (file + keyring). Thread-safe; re-reads the
    file when its mtime/size change (checked at most every `recheck_s`)."""

    def __init__(self, data_dir: Path, keyring, *, recheck_s: float = 1.0):
        self.data_dir = Path(data_dir)
        self.keyring = keyring
        self.recheck_s = recheck_s
        self.path = self.data_dir / ENDPOINTS_FILE
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._checked = 0.0
        self._endpoints: list[SqsEndpoint] = []

    # ---- reading
    def endpoints(self) -> list[SqsEndpoint]:
        with self._lock:
            now = time.monotonic()
            if now - self._checked >= self.recheck_s or self._stamp is None:
                self._checked = now
                try:
                    st = self.path.stat()
                    stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
                except FileNotFoundError:
                    stamp = ()
                if stamp != self._stamp:
                    try:
                        self._endpoints = self._load() if stamp else []
                        self._stamp = stamp
                    except Exception:
                        log.exception("could not read %s; keeping the previous external SQS endpoints", self.path)
            return list(self._endpoints)

    def lookup(self, arn: str, lambdalet_account: str | None = None) -> SqsEndpoint | None:
        """The endpoint whose rule matches the queue ARN best (and that this account may use)."""
        best, score = None, 0
        for ep in self.endpoints():
            s = ep.specificity(arn)
            if s > score:
                best, score = ep, s
        if best is not None and lambdalet_account is not None and not best.allows(lambdalet_account):
            return None
        return best

    def matches_any(self, arn: str) -> SqsEndpoint | None:
        return self.lookup(arn, None)

    def _load(self) -> list[SqsEndpoint]:
        doc = json.loads(self.path.read_text())
        out = []
        for e in doc.get("endpoints", []):
            creds = json.loads(self.keyring.unseal(base64.b64decode(e["credentials_sealed"]),
                                                   _AAD + e["name"].encode()))
            out.append(SqsEndpoint(name=e["name"], url=e["url"], account=e.get("account"), region=e.get("region"),
                                   arn_prefix=e.get("queue_arn_prefix"), ca_bundle=e.get("ca_bundle"),
                                   allowed_accounts=tuple(e.get("allowed_accounts") or ["*"]),
                                   access_key=creds["access_key"], secret_key=creds["secret_key"],
                                   session_token=creds.get("session_token")))
        return out

    # ---- writing (the CLI; the server only reads)
    @contextlib.contextmanager
    def _file_lock(self):
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.data_dir / (ENDPOINTS_FILE + ".lock"), "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _read_doc(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"version": 1, "endpoints": []}

    def _write_doc(self, doc: dict) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        with self._lock:
            self._stamp = None

    def add(self, name: str, url: str, *, access_key: str, secret_key: str, session_token: str | None = None,
            account: str | None = None, region: str | None = None, arn_prefix: str | None = None,
            ca_bundle_pem: bytes | None = None, allowed_accounts: Iterable[str] = ("*",),
            replace: bool = False) -> SqsEndpoint:
        validate_endpoint(name, url, account, region, arn_prefix, access_key, secret_key)
        allowed = sorted(set(allowed_accounts)) or ["*"]
        for a in allowed:
            if a != "*" and not _ACCOUNT_RE.match(a):
                raise ValueError(f"not an account id: {a!r}")
        creds = {"access_key": access_key, "secret_key": secret_key}
        if session_token:
            creds["session_token"] = session_token
        sealed = self.keyring.seal(json.dumps(creds).encode(), _AAD + name.encode())
        entry: dict[str, Any] = {"name": name, "url": url.rstrip("/"), "allowed_accounts": allowed,
                                 "credentials_sealed": base64.b64encode(sealed).decode(), "created_at": time.time()}
        if arn_prefix:
            entry["queue_arn_prefix"] = arn_prefix
        else:
            entry["account"] = account
            if region and region != "*":
                entry["region"] = region
        with self._file_lock():
            doc = self._read_doc()
            others = [e for e in doc["endpoints"] if e["name"] != name]
            if len(others) != len(doc["endpoints"]) and not replace:
                raise ValueError(f"an SQS endpoint named {name!r} exists (remove it first, or --replace)")
            if ca_bundle_pem is not None:
                if b"-----BEGIN CERTIFICATE-----" not in ca_bundle_pem:
                    raise ValueError("the CA bundle is not a PEM certificate file")
                ca_dir = self.data_dir / CA_DIR
                ca_dir.mkdir(mode=0o700, exist_ok=True)
                ca_path = ca_dir / f"{name}.pem"
                ca_path.write_bytes(ca_bundle_pem)
                entry["ca_bundle"] = str(ca_path)
            doc["endpoints"] = others + [entry]
            self._write_doc(doc)
        return self._entry_view(entry)

    def remove(self, name: str) -> bool:
        with self._file_lock():
            doc = self._read_doc()
            kept = [e for e in doc["endpoints"] if e["name"] != name]
            if len(kept) == len(doc["endpoints"]):
                return False
            doc["endpoints"] = kept
            self._write_doc(doc)
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / CA_DIR / f"{name}.pem").unlink()
        return True

    @staticmethod
    def _entry_view(e: dict) -> SqsEndpoint:
        return SqsEndpoint(name=e["name"], url=e["url"], account=e.get("account"), region=e.get("region"),
                           arn_prefix=e.get("queue_arn_prefix"), ca_bundle=e.get("ca_bundle"),
                           allowed_accounts=tuple(e.get("allowed_accounts") or ["*"]))


def validate_endpoint(name: str, url: str, account: str | None, region: str | None, arn_prefix: str | None,
                      access_key: str, secret_key: str) -> None:
    if not _NAME_RE.match(name or ""):
        raise ValueError("the endpoint name must be 1-64 characters: letters, digits, '_', '.', '-'")
    if not re.match(r"^https?://[^\s/]+", url or ""):
        raise ValueError(f"not an http(s) URL: {url!r}")
    if bool(arn_prefix) == bool(account):
        raise ValueError("give either an account (and optionally a region) or a queue ARN prefix")
    if arn_prefix and not arn_prefix.startswith("arn:aws"):
        raise ValueError("the queue ARN prefix must start with arn:aws (e.g. arn:aws:sqs:us-east-1:111122223333:)")
    if account and not _ACCOUNT_RE.match(account):
        raise ValueError(f"not an account id: {account!r}")
    if region and region != "*" and not _REGION_RE.match(region):
        raise ValueError(f"not a region: {region!r}")
    if not access_key or not secret_key:
        raise ValueError("an access key id and a secret access key are required")


# ------------------------------------------------------------------------------ an external SQS queue

class ExternalQueueError(AwsError):
    code = "ServiceException"
    status = 502


def _without_endpoint(text: str, endpoint_url: str | None) -> str:
    """The operator's endpoint (its URL, host and port) is not the tenant's to see (issue 21.9)."""
    if endpoint_url:
        from urllib.parse import urlsplit
        netloc = urlsplit(endpoint_url).netloc
        # A bare one-label host ("sqs") would also match ordinary words; a URL or host:port never does.
        for secret in (endpoint_url, endpoint_url.rstrip("/"), netloc if "." in netloc or ":" in netloc else ""):
            if secret:
                text = text.replace(secret, "<endpoint>")
    return text


def _aws_error(e: Exception, what: str, endpoint_url: str | None = None) -> AwsError:
    """The error a tenant sees (CreateEventSourceMapping, LastProcessingResult): the remote's code and
    message without the endpoint's address; a transport failure by its kind only (the operator's log
    has the details)."""
    from botocore.exceptions import ClientError
    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        message = _without_endpoint(str(err.get("Message", "")), endpoint_url)
        out = ExternalQueueError(f"{what}: {err.get('Code', 'Error')}: {message}")
        out.code = str(err.get("Code") or "ServiceException")
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 502
        out.status = int(status)
        out.sender_fault = out.status < 500
        return out
    log.warning("external queue endpoint %s: %s failed: %s: %s", endpoint_url, what, type(e).__name__, e)
    return ExternalQueueError(f"{what}: the queue's endpoint could not be reached ({type(e).__name__})")


def _is_missing_queue(e: AwsError) -> bool:
    return e.code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")


class ExternalSqsSource:
    """QueueSource for one queue on an external SQS-compatible endpoint (botocore's SQS client).

    The endpoint is looked up again on every client use, so a rotated key takes effect at once and a
    removed endpoint makes the mapping report a problem (it never falls back to a local queue)."""

    def __init__(self, registry: SqsEndpointRegistry, arn: str, lambdalet_account: str, *,
                 cache_s: float = 5.0, client_factory=None):
        parsed = parse_sqs_arn(arn)
        if parsed is None:
            raise ValueError(f"not an SQS queue ARN: {arn}")
        self.registry = registry
        self.arn = arn
        self.region, self.account, self.name = parsed
        self.lambdalet_account = lambdalet_account
        self.cache_s = cache_s
        self._client_factory = client_factory or _make_client
        self._lock = threading.Lock()
        self._client = None
        self._fingerprint: tuple | None = None
        self._url: str | None = None
        self._endpoint_url: str | None = None     # kept out of the errors a tenant sees
        self._vt: tuple[float, int] | None = None

    # ---- plumbing
    def _endpoint(self) -> SqsEndpoint:
        ep = self.registry.lookup(self.arn, self.lambdalet_account)
        if ep is None:
            raise ExternalQueueError(f"no external SQS endpoint is configured (or allowed) for {self.arn}")
        return ep

    def client(self):
        ep = self._endpoint()
        with self._lock:
            if self._client is None or self._fingerprint != ep.fingerprint:
                self._client = self._client_factory(ep, self.region)
                self._fingerprint = ep.fingerprint
                self._endpoint_url = ep.url
                self._url = None
            return self._client

    def queue_url(self) -> str:
        client = self.client()
        if self._url is None:
            try:
                self._url = client.get_queue_url(QueueName=self.name, QueueOwnerAWSAccountId=self.account)["QueueUrl"]
            except Exception as e:
                raise _aws_error(e, f"GetQueueUrl {self.arn}", self._endpoint_url) from None
        return self._url

    def _call(self, op: str, **kw):
        client = self.client()
        url = self.queue_url()
        try:
            return getattr(client, op)(QueueUrl=url, **kw)
        except Exception as e:
            err = _aws_error(e, f"{op} {self.arn}", self._endpoint_url)
            if _is_missing_queue(err):
                self._url = None          # deleted and created again: look the URL up next time
            raise err from None

    def _check(self, arn: str) -> None:
        if arn != self.arn:
            raise ValueError(f"this source is bound to {self.arn}, not {arn}")

    # ---- QueueSource
    def claim(self, arn: str, max_n: int, visibility_s: int, wait_s: float) -> list:
        from lambdalet.queues.service import Message
        self._check(arn)
        resp = self._call("receive_message", MaxNumberOfMessages=max(1, min(int(max_n), MAX_RECEIVE)),
                          VisibilityTimeout=max(0, int(visibility_s)),
                          WaitTimeSeconds=max(0, min(MAX_WAIT_S, int(round(wait_s)))),
                          AttributeNames=["All"], MessageAttributeNames=["All"])
        out = []
        for m in resp.get("Messages", []) or []:
            system = dict(m.get("Attributes") or {})
            attrs: dict[str, dict] = {}
            for k, a in (m.get("MessageAttributes") or {}).items():
                entry = {"DataType": a["DataType"]}
                if a.get("BinaryValue") is not None:
                    entry["BinaryValue"] = a["BinaryValue"]
                else:
                    entry["StringValue"] = a.get("StringValue", "")
                attrs[k] = entry
            first = system.get("ApproximateFirstReceiveTimestamp")
            out.append(Message(
                message_id=m["MessageId"], receipt=m["ReceiptHandle"], body=m.get("Body", "").encode(),
                attributes=attrs, system_attributes=system,
                receive_count=int(system.get("ApproximateReceiveCount", "1")),
                sent_at=int(system.get("SentTimestamp", "0")) / 1000.0,
                first_received_at=int(first) / 1000.0 if first else None,
                queue_arn=self.arn, dlq_source_arn=system.get("DeadLetterQueueSourceArn")))
        return out

    def ack(self, receipt: str) -> bool:
        self._call("delete_message", ReceiptHandle=receipt)
        return True

    def ack_many(self, receipts: Iterable[str]) -> None:
        receipts = list(receipts)
        for i in range(0, len(receipts), 10):
            chunk = receipts[i:i + 10]
            resp = self._call("delete_message_batch",
                              Entries=[{"Id": str(n), "ReceiptHandle": r} for n, r in enumerate(chunk)])
            for f in resp.get("Failed", []) or []:      # tried once more, alone
                try:
                    self.ack(chunk[int(f["Id"])])
                except AwsError as e:
                    log.warning("external queue %s: a delete failed: %s", self.arn, e.message)

    def nack(self, receipt: str, delay_s: float = 0) -> None:
        self._call("change_message_visibility", ReceiptHandle=receipt, VisibilityTimeout=max(0, int(delay_s)))

    def attributes(self, arn: str, names: list[str]) -> dict[str, str]:
        self._check(arn)
        return self._call("get_queue_attributes", AttributeNames=names).get("Attributes", {})

    def visibility_timeout(self, arn: str) -> int:
        now = time.monotonic()
        if self._vt and now - self._vt[0] < self.cache_s:
            return self._vt[1]
        vt = int(self.attributes(arn, ["VisibilityTimeout"]).get("VisibilityTimeout", "30"))
        self._vt = (now, vt)
        return vt


def _make_client(ep: SqsEndpoint, region: str):
    import botocore.session
    from botocore.config import Config
    session = botocore.session.Session()
    session.set_config_variable("credentials_file", os.devnull)   # only the configured credentials
    session.set_config_variable("config_file", os.devnull)
    cfg = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10,
                 read_timeout=MAX_WAIT_S + 20, max_pool_connections=64)
    return session.create_client("sqs", region_name=region, endpoint_url=ep.url,
                                 verify=ep.ca_bundle if ep.ca_bundle else True,
                                 aws_access_key_id=ep.access_key, aws_secret_access_key=ep.secret_key,
                                 aws_session_token=ep.session_token, config=cfg)


# ------------------------------------------------------------------------------ the router

class EventSources:
    """The source of each mapping's queue: external when an endpoint rule matches, else internal."""

    def __init__(self, internal: QueueSource, registry: SqsEndpointRegistry | None = None):
        self.internal = internal
        self.registry = registry
        self._external: dict[tuple[str, str], ExternalSqsSource] = {}
        self._lock = threading.Lock()

    def external_endpoint(self, arn: str, lambdalet_account: str | None = None) -> SqsEndpoint | None:
        if self.registry is None:
            return None
        try:
            return self.registry.lookup(arn, lambdalet_account)
        except Exception:
            log.exception("reading the external SQS endpoints")
            return None

    def is_external(self, arn: str) -> bool:
        return self.external_endpoint(arn) is not None

    def for_arn(self, arn: str, lambdalet_account: str) -> QueueSource:
        if self.registry is None or self.registry.matches_any(arn) is None:
            return self.internal
        key = (arn, lambdalet_account)
        with self._lock:
            src = self._external.get(key)
            if src is None:
                src = self._external[key] = ExternalSqsSource(self.registry, arn, lambdalet_account)
            return src


__all__ = ["QueueSource", "InternalQueueSource", "ExternalSqsSource", "EventSources", "SqsEndpoint",
           "SqsEndpointRegistry", "ExternalQueueError", "parse_sqs_arn", "service_context", "ServiceException"]
