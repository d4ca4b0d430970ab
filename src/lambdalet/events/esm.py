"""Event source mappings: the Lambda API operations (Create/Get/Update/Delete/ListEventSourceMappings)
for lambdalet's SQS queues, and the manager that runs one poller per enabled mapping.

Wiring (server/platform.py): built with the invoker, the queues, the external endpoints and the
RoleAuthority; started after the async pollers, closed before the invoker; server/bindings.py binds
the five *EventSourceMapping operations to it.

What AWS does and this does too
- Sources: SQS queues (standard and FIFO) of the caller's account and region, by ARN, and queues of any
  SQS-compatible endpoint the operator configured (`lambdalet sources add-sqs-endpoint`; an ARN
  matching an endpoint's rule is polled there with botocore, see events/sources.py). Other event
  sources (Kinesis, DynamoDB streams, Kafka, MQ, DocumentDB) are refused with
  InvalidParameterValueException.
- States: Create answers `Creating`, then the mapping is `Enabled` (or `Disabled`); Update answers
  `Enabling` / `Disabling` / `Updating`; Delete answers `Deleting` and the mapping disappears once its
  pollers have finished their batches. StateTransitionReason is `USER_INITIATED`.
- Validation as AWS words it: BatchSize 1-10000 (default 10), > 10 only with
  MaximumBatchingWindowInSeconds >= 1; window 0-300 (default 0); the queue's VisibilityTimeout must
  not be below the function's timeout; one mapping per (function ARN, queue); parameters that only
  apply to streams or Kafka are refused; FilterCriteria (<= 5 filters, EventBridge patterns),
  FunctionResponseTypes [ReportBatchItemFailures], ScalingConfig.MaximumConcurrency 2-1000.
  A FIFO queue takes no batching window ("Batching window is not supported for FIFO queues"), hence at
  most 10 records per batch; its poller keeps each message group in order (esm_poller.py).
- Authority (events/authority.py): the poller reads and deletes as the function's execution role. Create,
  and Update when it changes the function or enables the mapping, refuse a role that may not
  sqs:ReceiveMessage, sqs:DeleteMessage and sqs:GetQueueAttributes on the queue ("The provided execution
  role does not have permissions to call ReceiveMessage on SQS"); the poller asks again before every
  receive and every delete, so a role that loses the permission stops the mapping reading (it stays
  Enabled; LastProcessingResult says "PROBLEM: ..." and it resumes once the permission is back).
Records live in `event_source_mappings` (migration 0005); times are epoch seconds.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid as uuidlib
from typing import Any

import sqlalchemy as sa

from lambdalet.events.esm_poller import (InvokerCaller, LambdaletQueues, MappingPoller, MappingSpec, WORKER_CAP,
                                         parse_sqs_arn, service_context)
from lambdalet.events.authority import RoleAuthority
from lambdalet.events.esm_shares import BatchShares
from lambdalet.events.sources import EventSources
from lambdalet.events.filters import compile_filter_criteria
from lambdalet.models.context import RequestContext
from lambdalet.models.errors import (AwsError, InvalidParameterValueException, ResourceConflictException,
                                     ResourceInUseException, ResourceNotFoundException)
from lambdalet.services import records
from lambdalet.services.arns import Scope, function_arn, parse_function_ref
from lambdalet.services.paging import decode_marker, max_items, page
from lambdalet.services.tags import delete_all, validate_tags, write_tags
from lambdalet.services.validation import constraint_error
from lambdalet.store.schema import metadata

log = logging.getLogger("lambdalet.esm")
DEFAULT_BATCHES = 64               # --esm-batches: mapping batches in flight on this server, all accounts

event_source_mappings = sa.Table(
    "event_source_mappings", metadata,
    sa.Column("uuid", sa.String(36), primary_key=True),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("function_name", sa.String(64), nullable=False),     # unqualified name
    sa.Column("qualifier", sa.String(128), nullable=True),         # version or alias, as the user gave it
    sa.Column("event_source_arn", sa.String(1024), nullable=False),
    sa.Column("config", sa.Text, nullable=False),                  # JSON of the settable members (AWS names)
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("state_reason", sa.String(256), nullable=False, server_default="USER_INITIATED"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_modified", sa.Float, nullable=False),
    sa.Index("ix_event_source_mappings_scope", "account_id", "region"),
)
ESM = event_source_mappings

BATCH_MIN, BATCH_MAX, BATCH_DEFAULT = 1, 10000, 10
WINDOW_MAX = 300
CONCURRENCY_MIN, CONCURRENCY_MAX = 2, 1000
NOT_FOUND = "The resource you requested does not exist."
USER_INITIATED = "USER_INITIATED"
NO_RECORDS = "No records processed"
POLLER_ACTIONS = ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes")   # what AWS asks of the role
JOIN_TIMEOUT_S = 960.0        # longest a stopping poller may still be finishing a batch (900 s timeout + margin)

# Members of the model that only apply to streams, Kafka, MQ or DocumentDB sources.
_NOT_FOR_SQS = ("StartingPosition", "StartingPositionTimestamp", "ParallelizationFactor", "DestinationConfig",
                "MaximumRecordAgeInSeconds", "BisectBatchOnFunctionError", "MaximumRetryAttempts",
                "TumblingWindowInSeconds", "Topics", "Queues", "SourceAccessConfigurations",
                "SelfManagedEventSource", "AmazonManagedKafkaEventSourceConfig",
                "SelfManagedKafkaEventSourceConfig", "DocumentDBEventSourceConfig", "ProvisionedPollerConfig")
# Members kept and echoed as given (they change nothing here).
_ECHOED = ("MetricsConfig", "LoggingConfig", "KMSKeyArn")
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _int(value, field: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise constraint_error(value, field, "Member must be an integer")
    if value < lo:
        raise constraint_error(value, field, f"Member must have value greater than or equal to {lo}")
    if value > hi:
        raise constraint_error(value, field, f"Member must have value less than or equal to {hi}")
    return value


class EventSourceMappings:
    def __init__(self, db, queues, invoker=None, settings=None, *, source=None, caller=None,
                 worker_cap: int = WORKER_CAP, clock=time.time, poll_wait_s: float | None = None,
                 vis_margin_s: int | None = None, endpoints=None, authority: RoleAuthority | None = None):
        self.db = db
        self.queues = queues
        self.settings = settings
        self.source = source or LambdaletQueues(queues)
        # lambdalet's queues, or an external SQS endpoint (events/sources.SqsEndpointRegistry) per ARN
        self.sources = EventSources(self.source, endpoints)
        self.caller = caller or (InvokerCaller(invoker) if invoker is not None else None)
        self.worker_cap = worker_cap
        self.clock = clock
        self.poll_wait_s = poll_wait_s
        self.vis_margin_s = vis_margin_s
        self.authority = authority     # a mapping polls and invokes as its function's execution role
        self._lock = threading.RLock()
        self._pollers: dict[str, MappingPoller] = {}
        # batches in flight, all mappings of all accounts: 3/4 at most for one account (esm_shares.py)
        self.shares = BatchShares(getattr(settings, "esm_batches", None) or DEFAULT_BATCHES)
        self._joiners: list[threading.Thread] = []
        self._started = False
        self._closed = False

    # ============================================================ lifecycle

    def start(self) -> None:
        """Settle states left by a previous run (finish deletes), then poll every enabled mapping."""
        with self._lock:
            if self._started:
                return
            self._started = True
            with self.db.begin() as conn:
                for gone in conn.execute(sa.select(ESM).where(ESM.c.state == "Deleting")).all():
                    delete_all(conn, _mapping_arn(gone.region, gone.account_id, gone.uuid))
                conn.execute(sa.delete(ESM).where(ESM.c.state == "Deleting"))
                conn.execute(sa.update(ESM).where(ESM.c.enabled.is_(True), ESM.c.state != "Enabled")
                             .values(state="Enabled"))
                conn.execute(sa.update(ESM).where(ESM.c.enabled.is_(False), ESM.c.state != "Disabled")
                             .values(state="Disabled"))
                rows = conn.execute(sa.select(ESM).where(ESM.c.enabled.is_(True))).all()
            for row in rows:
                self._start_poller(row)

    def close(self, timeout: float = 10.0) -> None:
        """Stop every poller; wait up to `timeout` for batches in flight (their messages come back anyway)."""
        with self._lock:
            self._closed = True
            pollers = list(self._pollers.values())
            self._pollers.clear()
        for p in pollers:
            p.stop()
        deadline = time.monotonic() + timeout
        for p in pollers:
            p.join(max(0.0, deadline - time.monotonic()))

    def poller(self, mapping_uuid: str) -> MappingPoller | None:
        """The running poller of a mapping (tests and diagnostics)."""
        with self._lock:
            return self._pollers.get(mapping_uuid)

    # ============================================================ API operations

    def create_event_source_mapping(self, ctx: RequestContext, params: dict) -> dict:
        scope = Scope.of(ctx)
        self._refuse_unsupported(params)
        if not params.get("EventSourceArn"):
            raise InvalidParameterValueException("EventSourceArn is required for an SQS event source mapping.")
        source_arn = self._check_source(scope, params["EventSourceArn"])
        name, qualifier, timeout, role = self._check_function(ctx, params["FunctionName"], "CreateEventSourceMapping")
        cfg = self._config({}, params, fifo_source=_is_fifo(source_arn))
        self._check_role(scope, role, source_arn)
        self._check_visibility(scope, source_arn, timeout)
        enabled = params.get("Enabled", True)
        if not isinstance(enabled, bool):
            raise constraint_error(enabled, "enabled", "Member must be a boolean")
        tags = validate_tags(params.get("Tags"))      # kept under the mapping's ARN (services/tags.py)
        now = self.clock()
        mapping_uuid = str(uuidlib.uuid4())
        fn_arn = scope.function_arn(name, qualifier)
        with self.db.begin() as conn:
            records.require_function(conn, scope, name, qualifier)
            for other in conn.execute(sa.select(ESM).where(
                    ESM.c.account_id == scope.account_id, ESM.c.region == scope.region,
                    ESM.c.event_source_arn == source_arn, ESM.c.function_name == name)).all():
                if other.qualifier == qualifier:
                    raise ResourceConflictException(
                        f'An event source mapping with SQS arn (" {source_arn} ") and function (" {fn_arn} ") '
                        f"already exists. Please update or delete the existing mapping with UUID {other.uuid}")
            conn.execute(ESM.insert().values(
                uuid=mapping_uuid, account_id=scope.account_id, region=scope.region, function_name=name,
                qualifier=qualifier, event_source_arn=source_arn, config=json.dumps(cfg, sort_keys=True),
                enabled=enabled, state="Creating", state_reason=USER_INITIATED, created_at=now, last_modified=now))
            write_tags(conn, _mapping_arn(scope.region, scope.account_id, mapping_uuid), tags)
            row = conn.execute(sa.select(ESM).where(ESM.c.uuid == mapping_uuid)).one()
        out = self._view(row)
        self._apply(mapping_uuid)
        return out

    def get_event_source_mapping(self, ctx: RequestContext, params: dict) -> dict:
        with self.db.read() as conn:
            row = self._require(conn, Scope.of(ctx), params.get("UUID"))
        return self._view(row)

    def update_event_source_mapping(self, ctx: RequestContext, params: dict) -> dict:
        scope = Scope.of(ctx)
        self._refuse_unsupported(params)
        mapping_uuid = params.get("UUID")
        with self.db.read() as conn:
            row = self._require(conn, scope, mapping_uuid)
        if row.state == "Deleting":
            raise ResourceInUseException(
                f"Cannot update the event source mapping {row.uuid} because it is in the Deleting state.")
        name, qualifier = row.function_name, row.qualifier
        timeout = None
        if params.get("FunctionName") is not None:
            name, qualifier, timeout, role = self._check_function(ctx, params["FunctionName"],
                                                                  "UpdateEventSourceMapping")
            self._check_role(scope, role, row.event_source_arn)
        elif params.get("Enabled") is True and not row.enabled:     # re-enabling: the role must still read it
            self._check_role(scope, self._check_function(ctx, _ref(name, qualifier), "UpdateEventSourceMapping")[3],
                             row.event_source_arn)
        cfg = self._config(json.loads(row.config), params, fifo_source=_is_fifo(row.event_source_arn))
        if timeout is not None:
            self._check_visibility(scope, row.event_source_arn, timeout)
        enabled = row.enabled
        if params.get("Enabled") is not None:
            if not isinstance(params["Enabled"], bool):
                raise constraint_error(params["Enabled"], "enabled", "Member must be a boolean")
            enabled = params["Enabled"]
        if enabled and not row.enabled:
            state = "Enabling"
        elif row.enabled and not enabled:
            state = "Disabling"
        else:
            state = "Updating"
        with self.db.begin() as conn:
            current = conn.execute(sa.select(ESM).where(ESM.c.uuid == row.uuid)).first()
            if current is None:
                raise ResourceNotFoundException(NOT_FOUND)
            if current.state == "Deleting":
                raise ResourceInUseException(
                    f"Cannot update the event source mapping {row.uuid} because it is in the Deleting state.")
            if (name, qualifier) != (row.function_name, row.qualifier):
                records.require_function(conn, scope, name, qualifier)
                clash = conn.execute(sa.select(ESM.c.uuid, ESM.c.qualifier).where(
                    ESM.c.account_id == scope.account_id, ESM.c.region == scope.region,
                    ESM.c.event_source_arn == row.event_source_arn, ESM.c.function_name == name,
                    ESM.c.uuid != row.uuid)).all()
                for other in clash:
                    if other.qualifier == qualifier:
                        raise ResourceConflictException(
                            f'An event source mapping with SQS arn (" {row.event_source_arn} ") and function '
                            f'(" {scope.function_arn(name, qualifier)} ") already exists. Please update or delete '
                            f"the existing mapping with UUID {other.uuid}")
            conn.execute(sa.update(ESM).where(ESM.c.uuid == row.uuid).values(
                function_name=name, qualifier=qualifier, config=json.dumps(cfg, sort_keys=True), enabled=enabled,
                state=state, state_reason=USER_INITIATED, last_modified=self.clock()))
            updated = conn.execute(sa.select(ESM).where(ESM.c.uuid == row.uuid)).one()
        out = self._view(updated)
        self._apply(row.uuid)
        return out

    def delete_event_source_mapping(self, ctx: RequestContext, params: dict) -> dict:
        scope = Scope.of(ctx)
        with self.db.begin() as conn:
            row = self._require(conn, scope, params.get("UUID"))
            if row.state != "Deleting":
                conn.execute(sa.update(ESM).where(ESM.c.uuid == row.uuid).values(
                    state="Deleting", state_reason=USER_INITIATED))
                row = conn.execute(sa.select(ESM).where(ESM.c.uuid == row.uuid)).one()
        out = self._view(row)
        self._apply(row.uuid)
        return out

    def list_event_source_mappings(self, ctx: RequestContext, params: dict) -> dict:
        scope = Scope.of(ctx)
        limit = max_items(params, default=100, limit=10000)
        after = decode_marker(params.get("Marker"), "esm")
        stmt = sa.select(ESM).where(ESM.c.account_id == scope.account_id, ESM.c.region == scope.region)
        if params.get("EventSourceArn"):
            stmt = stmt.where(ESM.c.event_source_arn == params["EventSourceArn"])
        if params.get("FunctionName"):
            ref = parse_function_ref(scope, params["FunctionName"], caller_arn=ctx.caller.principal_arn,
                                     action="ListEventSourceMappings")
            stmt = stmt.where(ESM.c.function_name == ref.name)
            if ref.qualifier is not None:
                stmt = stmt.where(ESM.c.qualifier == ref.qualifier)
        if after:
            stmt = stmt.where(ESM.c.uuid > str(after[0]))
        stmt = stmt.order_by(ESM.c.uuid).limit(limit + 1)
        with self.db.read() as conn:
            rows = conn.execute(stmt).all()
        items, marker = page(rows, limit, "esm", lambda r: [r.uuid])
        out: dict[str, Any] = {"EventSourceMappings": [self._view(r) for r in items]}
        if marker:
            out["NextMarker"] = marker
        return out

    # ============================================================ validation

    def _refuse_unsupported(self, params: dict) -> None:
        for name in _NOT_FOR_SQS:
            if params.get(name) not in (None, [], {}):
                raise InvalidParameterValueException(
                    f"Unsupported parameter for an SQS event source: {name}. lambdalet maps SQS queues only; "
                    f"{name} applies to stream, Kafka, MQ or DocumentDB event sources.")

    def _check_source(self, scope: Scope, arn: Any) -> str:
        if not isinstance(arn, str):
            raise constraint_error(arn, "eventSourceArn", "Member must be a string")
        parsed = parse_sqs_arn(arn)
        if parsed is None:
            raise InvalidParameterValueException(
                f"Unsupported event source {arn}: lambdalet maps SQS queues (arn:aws:sqs:<region>:<account>:<queue>) "
                "only; Kinesis, DynamoDB, Kafka, MQ and DocumentDB sources are not available.")
        region, account, _ = parsed
        if self.sources.is_external(arn):
            if self.sources.external_endpoint(arn, scope.account_id) is None:
                raise InvalidParameterValueException(
                    f"The queue {arn} is on an external SQS endpoint that account {scope.account_id} may not use.")
            return arn
        if account != scope.account_id or region != scope.region:
            raise InvalidParameterValueException(
                f"The queue {arn} is not in this account and region ({scope.account_id}, {scope.region}); "
                "lambdalet maps only its own queues of the caller's account and region.")
        return arn

    def _queue_attributes(self, scope: Scope, arn: str) -> dict[str, str]:
        _, _, name = parse_sqs_arn(arn)
        if self.sources.is_external(arn):
            try:
                return self.sources.for_arn(arn, scope.account_id).attributes(arn, ["VisibilityTimeout", "QueueArn"])
            except AwsError as e:
                if e.code in ("QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue"):
                    raise InvalidParameterValueException(
                        "Error occurred while ReceiveMessage. SQS Error Code: AWS.SimpleQueueService.NonExistentQueue. "
                        "SQS Error Message: The specified queue does not exist or you do not have access to it.") from None
                raise InvalidParameterValueException(f"The external queue {arn} is not available: {e.message}") from None
        try:
            return self.queues.get_queue_attributes(
                service_context(scope.account_id, scope.region),
                {"QueueUrl": f"{scope.account_id}/{name}", "AttributeNames": ["VisibilityTimeout", "QueueArn"]},
            ).get("Attributes", {})
        except AwsError as e:
            if e.code == "QueueDoesNotExist":
                raise InvalidParameterValueException(
                    "Error occurred while ReceiveMessage. SQS Error Code: AWS.SimpleQueueService.NonExistentQueue. "
                    "SQS Error Message: The specified queue does not exist or you do not have access to it.") from None
            raise

    def _check_visibility(self, scope: Scope, arn: str, function_timeout: int) -> None:
        vt = int(self._queue_attributes(scope, arn).get("VisibilityTimeout", "30"))
        if vt < function_timeout:
            raise InvalidParameterValueException(
                f"Queue visibility timeout: {vt} seconds is less than Function timeout: {function_timeout} seconds")

    def _check_function(self, ctx: RequestContext, value: Any, action: str) -> tuple[str, str | None, int, str]:
        """(name, qualifier, timeout, execution role ARN) of the function version the mapping names."""
        scope = Scope.of(ctx)
        ref = parse_function_ref(scope, value, caller_arn=ctx.caller.principal_arn, action=action)
        with self.db.read() as conn:
            _, version, _ = records.resolve(conn, scope, ref.name, ref.qualifier)
        cfg = records.config_of(version)
        return ref.name, ref.qualifier, int(cfg.get("Timeout", 3)), str(cfg.get("Role") or "")

    def role_refusal(self, role: str, source_arn: str, region: str,
                     actions: tuple[str, ...] = POLLER_ACTIONS) -> str | None:
        """The first of `actions` the execution role may not perform on the queue, as AWS words it; None
        when it may do them all (or when no authority is wired)."""
        if self.authority is None:
            return None
        external = self.sources.is_external(source_arn)
        for op in actions:
            decision = self.authority.role_may(role, f"sqs:{op}", source_arn, region=region, same_account=external)
            if not decision.allowed:
                return f"The provided execution role does not have permissions to call {op} on SQS"
        return None

    def _check_role(self, scope: Scope, role: str, source_arn: str) -> None:
        refusal = self.role_refusal(role, source_arn, scope.region)
        if refusal is not None:
            raise InvalidParameterValueException(refusal)

    def _config(self, cfg: dict, params: dict, *, fifo_source: bool = False) -> dict:
        """Merge the request's settable members into a stored configuration, validating the result."""
        cfg = dict(cfg)
        cfg.setdefault("BatchSize", BATCH_DEFAULT)
        cfg.setdefault("MaximumBatchingWindowInSeconds", 0)
        cfg.setdefault("FunctionResponseTypes", [])
        if params.get("BatchSize") is not None:
            cfg["BatchSize"] = _int(params["BatchSize"], "batchSize", BATCH_MIN, BATCH_MAX)
        if params.get("MaximumBatchingWindowInSeconds") is not None:
            cfg["MaximumBatchingWindowInSeconds"] = _int(params["MaximumBatchingWindowInSeconds"],
                                                         "maximumBatchingWindowInSeconds", 0, WINDOW_MAX)
        if fifo_source and cfg["MaximumBatchingWindowInSeconds"] > 0:
            raise InvalidParameterValueException("Batching window is not supported for FIFO queues")
        if cfg["BatchSize"] > 10 and cfg["MaximumBatchingWindowInSeconds"] < 1:
            raise InvalidParameterValueException(
                "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10")
        if "FilterCriteria" in params and params["FilterCriteria"] is not None:
            fc = params["FilterCriteria"]
            compile_filter_criteria(fc)
            filters = (fc or {}).get("Filters") or []
            if filters:
                cfg["FilterCriteria"] = {"Filters": [{"Pattern": f["Pattern"]} for f in filters]}
            else:
                cfg.pop("FilterCriteria", None)         # an empty FilterCriteria removes the filters
        if params.get("FunctionResponseTypes") is not None:
            types = params["FunctionResponseTypes"]
            if not isinstance(types, list) or len(types) > 1 or any(t != "ReportBatchItemFailures" for t in types):
                raise constraint_error(types, "functionResponseTypes",
                                       "Member must satisfy constraint: [Member must satisfy enum value set: "
                                       "[ReportBatchItemFailures]]")
            cfg["FunctionResponseTypes"] = list(types)
        if params.get("ScalingConfig") is not None:
            sc = params["ScalingConfig"]
            if not isinstance(sc, dict):
                raise InvalidParameterValueException("ScalingConfig must be an object.")
            if sc.get("MaximumConcurrency") is not None:
                cfg["ScalingConfig"] = {"MaximumConcurrency": _int(
                    sc["MaximumConcurrency"], "scalingConfig.maximumConcurrency", CONCURRENCY_MIN, CONCURRENCY_MAX)}
            else:
                cfg.pop("ScalingConfig", None)          # an empty ScalingConfig removes the limit
        for name in _ECHOED:
            if params.get(name) is not None:
                cfg[name] = params[name]
        return cfg

    def _require(self, conn, scope: Scope, mapping_uuid: Any):
        if not isinstance(mapping_uuid, str) or not _UUID_RE.fullmatch(mapping_uuid):
            raise ResourceNotFoundException(NOT_FOUND)
        row = conn.execute(sa.select(ESM).where(ESM.c.uuid == mapping_uuid, ESM.c.account_id == scope.account_id,
                                                ESM.c.region == scope.region)).first()
        if row is None:
            raise ResourceNotFoundException(NOT_FOUND)
        return row

    # ============================================================ views

    def _view(self, row) -> dict:
        cfg = json.loads(row.config)
        out: dict[str, Any] = {
            "UUID": row.uuid,
            "BatchSize": cfg.get("BatchSize", BATCH_DEFAULT),
            "MaximumBatchingWindowInSeconds": cfg.get("MaximumBatchingWindowInSeconds", 0),
            "EventSourceArn": row.event_source_arn,
            "FunctionArn": function_arn(row.region, row.account_id, row.function_name, row.qualifier),
            "LastModified": row.last_modified,
            "State": row.state,
            "StateTransitionReason": row.state_reason,
            "FunctionResponseTypes": cfg.get("FunctionResponseTypes", []),
            "EventSourceMappingArn": _mapping_arn(row.region, row.account_id, row.uuid),
        }
        for name in ("FilterCriteria", "ScalingConfig") + _ECHOED:
            if name in cfg:
                out[name] = cfg[name]
        poller = self._pollers.get(row.uuid)       # the running poller's last outcome (kept in memory)
        out["LastProcessingResult"] = poller.stats.last_result if poller is not None else NO_RECORDS
        return out

    # ============================================================ pollers

    def _spec(self, row) -> MappingSpec:
        cfg = json.loads(row.config)
        return MappingSpec(
            uuid=row.uuid, account_id=row.account_id, region=row.region, function_name=row.function_name,
            qualifier=row.qualifier, event_source_arn=row.event_source_arn,
            batch_size=int(cfg.get("BatchSize", BATCH_DEFAULT)),
            window_s=int(cfg.get("MaximumBatchingWindowInSeconds", 0)),
            report_failures="ReportBatchItemFailures" in cfg.get("FunctionResponseTypes", []),
            filters=tuple(compile_filter_criteria(cfg.get("FilterCriteria"))),
            max_concurrency=(cfg.get("ScalingConfig") or {}).get("MaximumConcurrency"))

    def _start_poller(self, row) -> None:
        if self.caller is None or self._closed:
            return
        kw: dict[str, Any] = {}
        if self.poll_wait_s is not None:
            kw["poll_wait_s"] = self.poll_wait_s
        if self.vis_margin_s is not None:
            kw["vis_margin_s"] = self.vis_margin_s
        source = self.sources.for_arn(row.event_source_arn, row.account_id)
        poller = MappingPoller(self._spec(row), source, self.caller, worker_cap=self.worker_cap,
                               permission=self._poller_permission, shares=self.shares, **kw)
        self._pollers[row.uuid] = poller
        poller.start()

    def _poller_permission(self, spec: MappingSpec, role: str, op: str) -> str | None:
        """Delivery time: may the function's role (as resolved for this batch) still do `op`?"""
        refusal = self.role_refusal(role, spec.event_source_arn, spec.region, (op,))
        return None if refusal is None else f"PROBLEM: {refusal}"

    def _apply(self, mapping_uuid: str) -> None:
        """Make the running pollers match the stored mapping, and settle its State."""
        with self._lock:
            with self.db.read() as conn:
                row = conn.execute(sa.select(ESM).where(ESM.c.uuid == mapping_uuid)).first()
            running = self._pollers.get(mapping_uuid)
            if row is None:
                if running:
                    self._pollers.pop(mapping_uuid).stop()
                return
            if row.state == "Deleting":
                self._pollers.pop(mapping_uuid, None)
                self._after_stop(running, mapping_uuid, delete=True)
                return
            if not row.enabled:
                self._pollers.pop(mapping_uuid, None)
                self._after_stop(running, mapping_uuid, delete=False)
                return
            if not self._started:
                return        # start() will poll it
            if running is not None and not running.stopped:
                running.update(self._spec(row))
            else:
                self._start_poller(row)
            self._settle(mapping_uuid, frozenset({"Creating", "Enabling", "Updating"}), "Enabled")

    def _settle(self, mapping_uuid: str, from_states: frozenset[str], to_state: str) -> None:
        with self.db.begin() as conn:
            conn.execute(sa.update(ESM).where(ESM.c.uuid == mapping_uuid, ESM.c.state.in_(from_states))
                         .values(state=to_state))

    def _after_stop(self, poller: MappingPoller | None, mapping_uuid: str, *, delete: bool) -> None:
        """Stop a poller; once its batches in flight are done, finish the transition (Disabled / gone)."""
        def finish() -> None:
            if poller is not None:
                poller.join(JOIN_TIMEOUT_S)
            try:
                if delete:
                    with self.db.begin() as conn:
                        gone = conn.execute(sa.select(ESM.c.region, ESM.c.account_id).where(
                            ESM.c.uuid == mapping_uuid, ESM.c.state == "Deleting")).first()
                        if gone is not None:      # its tags go with it
                            conn.execute(sa.delete(ESM).where(ESM.c.uuid == mapping_uuid))
                            delete_all(conn, _mapping_arn(gone.region, gone.account_id, mapping_uuid))
                else:
                    self._settle(mapping_uuid, frozenset({"Creating", "Disabling", "Updating", "Enabling"}),
                                 "Disabled")
            except Exception:
                if not self._closed:
                    log.exception("event source mapping %s: could not finish its transition", mapping_uuid)

        if poller is None:
            finish()
            return
        poller.stop()
        t = threading.Thread(target=finish, name=f"esm-stop-{mapping_uuid[:8]}", daemon=True)
        self._joiners = [j for j in self._joiners if j.is_alive()] + [t]
        t.start()


def _ref(name: str, qualifier: str | None) -> str:
    return f"{name}:{qualifier}" if qualifier else name


def _mapping_arn(region: str, account_id: str, mapping_uuid: str) -> str:
    return f"arn:aws:lambda:{region}:{account_id}:event-source-mapping:{mapping_uuid}"


def _is_fifo(queue_arn: str) -> bool:
    return queue_arn.endswith(".fifo")

