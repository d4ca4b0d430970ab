"""One authorization step for every API request: (service, operation, input, caller) -> IAM action,
resource ARN and request condition keys -> the policy engine -> allowed, or AWS's AccessDenied.

    authorize = RequestAuthorizer(authorizer, function_facts=..., generation=...)
    ctx = authorize(service, operation_name, params, ctx)     # api/app.py, after protocol.parse

- lambda: `lambda_request` (data/lambda_actions.json); a function ARN brings its resource-based
  policy (AddPermission) and its tags (aws:ResourceTag/<key>, ABAC); a layer version ARN brings its
  layer version policy (AddLayerVersionPermission), so another account may use a granted layer.
- sqs: `sqs:<Op>` on the queue ARN from QueueUrl / QueueName (batch operations are authorized as
  their single-message action, as SQS does), with the queue's `Policy` attribute as its
  resource-based policy (queues/policy.py), so another account may use a granted queue.
- logs: `logs:<Op>` on the log group ARN (`...:log-group:NAME`, `:log-stream:STREAM` appended for
  stream-level calls); calls naming no group use `...:log-group:*`.
- cloudtrail: `cloudtrail:<Op>` on `*`.
- iam, sts, organizations: authorize themselves inside iam_service / sts_service /
  organizations_service (GetCallerIdentity needs no permission; Organizations' resource ARNs carry
  the organization id and only the management account may manage it); passed through here.
- kms: operations on a key are decided by KMS with the key policy (kms/service.py); those naming no
  key (CreateKey, ListKeys, ...) are `kms:<Op>` on `*` here.
- anything else: `<service>:<Op>` on `*` (deny unless an identity policy allows it).

Cross-account: a caller may name a function in another account by ARN. Once the engine allows it
(both the caller's identity policy and the function's resource policy), the service must look the
function up in the owner's account: the context handed on is a `ResourceAccountContext`, whose
`account_id` is the resource owner's while `caller` still says who is asking. Every service already
scopes its lookups by `ctx.account_id`, so nothing else changes.

Cheap by construction: identity policies are cached per principal in `Authorizer` (invalidated by
the Directory's generation); function policies and tags are cached per function ARN here
(invalidated by the control plane's generation, which every Lambda write bumps). A warm request
does no I/O and parses no JSON.

Imports only iam/ and models/: the function facts come in as a callable (server/run.py wires
services/policies.py), so iam stays below services.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Mapping
from urllib.parse import unquote, urlsplit

from lambdalet.iam.authz import Authorizer, lambda_request
from lambdalet.iam.policy import MalformedPolicy, Policy, parse_policy
from lambdalet.models.context import RequestContext

SELF_AUTHORIZING = frozenset({"iam", "sts", "organizations"})
# KMS decides operations on a key itself (the key policy is primary, kms/service.py); the calls that
# name no key are authorized by identity policies alone, on "*", as in AWS.
KMS_ACCOUNT_LEVEL = frozenset({"CreateKey", "ListKeys", "ListAliases", "GenerateRandom", "CreateCustomKeyStore",
                               "DescribeCustomKeyStores", "ConnectCustomKeyStore", "DisconnectCustomKeyStore",
                               "DeleteCustomKeyStore", "UpdateCustomKeyStore", "ListRetirableGrants"})
_ACCOUNT_RE = re.compile(r"\d{12}")
_FUNCTION_ARN = re.compile(r"arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):function:"
                           r"(?P<name>[a-zA-Z0-9_-]+)(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9_-]+))?")
_LAYER_VERSION_ARN = re.compile(r"arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):layer:"
                                r"(?P<name>[a-zA-Z0-9_-]+):(?P<version>[0-9]{1,15})")
_LOG_GROUP_ARN = re.compile(r"arn:aws[a-zA-Z-]*:logs:(?P<region>[a-z0-9-]*):(?P<account>\d{12}):log-group:"
                            r"(?P<name>[^:]+)(?::\*)?")
_SQS_BATCH = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage",
              "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}

# (region, account, function name, qualifier or None) -> (policy document or None, tags)
FunctionFacts = Callable[[str, str, str, "str | None"], "tuple[str | None, Mapping[str, str]]"]
# (region, account, layer name, version) -> the layer version policy document or None
LayerPolicies = Callable[[str, str, str, int], "str | None"]
# (region, account, queue name) -> the queue's Policy attribute or None
QueuePolicies = Callable[[str, str, str], "str | None"]
_QUEUE_ARN = re.compile(r"arn:aws[a-zA-Z-]*:sqs:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):(?P<name>[A-Za-z0-9_.-]{1,80})")


@dataclasses.dataclass(frozen=True)
class ResourceAccountContext(RequestContext):
    """A request allowed to act on another account's resource: services scope by the owner's account
    (`account_id`); `caller` is unchanged (audit, error messages, identity)."""
    resource_account: str = ""

    @property
    def account_id(self) -> str:    # type: ignore[override]
        return self.resource_account


def in_account(ctx: RequestContext, account_id: str) -> RequestContext:
    if account_id == ctx.account_id:
        return ctx
    values = {f.name: getattr(ctx, f.name) for f in dataclasses.fields(ctx) if f.name != "resource_account"}
    return ResourceAccountContext(**values, resource_account=account_id)


# ---------------------------------------------------------------- request -> (action, resource, keys)


def _tag_keys(keys: dict[str, Any], tags: Any, *, request_tags: bool = True) -> None:
    if isinstance(tags, Mapping):
        if request_tags:
            for k, v in tags.items():
                keys[f"aws:RequestTag/{k}"] = v
        keys["aws:TagKeys"] = list(tags)
    elif isinstance(tags, (list, tuple)):
        keys["aws:TagKeys"] = [str(k) for k in tags]


def sqs_request(operation: str, params: Mapping[str, Any], ctx: RequestContext) -> tuple[str, str, dict]:
    action = "sqs:" + _SQS_BATCH.get(operation, operation)
    account, name = ctx.account_id, None
    url = params.get("QueueUrl")
    if isinstance(url, str) and url:
        parts = [unquote(p) for p in urlsplit(url).path.split("/") if p] if "://" in url else \
            [p for p in url.split("/") if p]
        if len(parts) >= 2 and _ACCOUNT_RE.fullmatch(parts[-2]):
            account, name = parts[-2], parts[-1]
        elif len(parts) == 1:
            name = parts[0]
    elif isinstance(params.get("QueueName"), str):
        name = params["QueueName"]
        owner = params.get("QueueOwnerAWSAccountId")
        if isinstance(owner, str) and _ACCOUNT_RE.fullmatch(owner):
            account = owner
    elif isinstance(params.get("SourceArn"), str) and params["SourceArn"].startswith("arn:"):
        return action, params["SourceArn"], {}
    arn = f"arn:aws:sqs:{ctx.region}:{account}:{name}" if name else "*"
    keys: dict[str, Any] = {}
    if operation == "CreateQueue":
        _tag_keys(keys, params.get("tags"))
    elif operation == "TagQueue":
        _tag_keys(keys, params.get("Tags"))
    elif operation == "UntagQueue":
        _tag_keys(keys, params.get("TagKeys"))
    return action, arn, keys


def logs_request(operation: str, params: Mapping[str, Any], ctx: RequestContext) -> tuple[str, str, dict]:
    region, account = ctx.region, ctx.account_id
    name = params.get("logGroupName")
    ident = params.get("logGroupIdentifier")
    if not name and isinstance(ident, str) and ident:
        m = _LOG_GROUP_ARN.fullmatch(ident)
        if m:
            region, account, name = m["region"] or region, m["account"], m["name"]
        elif not ident.startswith("arn:"):
            name = ident
    base = f"arn:aws:logs:{region}:{account}:log-group:"
    if isinstance(name, str) and name:
        arn = base + name
        stream = params.get("logStreamName")
        if isinstance(stream, str) and stream:
            arn += f":log-stream:{stream}"
    else:
        arn = base + "*"
    keys: dict[str, Any] = {}
    if operation == "CreateLogGroup":
        _tag_keys(keys, params.get("tags"))
    return "logs:" + operation, arn, keys


def map_request(service: str, operation: str, params: Mapping[str, Any], ctx: RequestContext
                ) -> tuple[str, str, dict]:
    """(IAM action, resource ARN, request condition keys) for one call of any served API."""
    if service == "lambda":
        return lambda_request(operation, params, ctx)
    if service == "sqs":
        return sqs_request(operation, params, ctx)
    if service == "logs":
        return logs_request(operation, params, ctx)
    return f"{service}:{operation}", "*", {}     # cloudtrail:LookupEvents and anything unscoped


def removed_statement_keys(policy: Policy, sid: Any) -> dict[str, Any]:
    """RemovePermission's lambda:Principal and lambda:FunctionUrlAuthType: what the statement it
    removes grants (the principal as AddPermission took it: a service, an account id, an ARN or *)."""
    for st in policy.statements:
        if not sid or st.sid != sid:
            continue
        keys: dict[str, Any] = {}
        spec = st.principal or {}
        if "*" in spec or spec.get("AWS") == ("*",):
            keys["lambda:Principal"] = "*"
        elif spec.get("Service"):
            keys["lambda:Principal"] = spec["Service"][0]
        elif spec.get("AWS"):
            m = re.fullmatch(r"arn:aws[a-zA-Z-]*:iam::(\d{12}):root", spec["AWS"][0])
            keys["lambda:Principal"] = m.group(1) if m else spec["AWS"][0]
        for block in (st.condition or {}).values():
            if isinstance(block, Mapping):
                for key, value in block.items():
                    if key.lower() == "lambda:functionurlauthtype":
                        keys["lambda:FunctionUrlAuthType"] = value
        return keys
    return {}


def resource_account(arn: str) -> str | None:
    parts = arn.split(":", 5)
    if len(parts) == 6 and _ACCOUNT_RE.fullmatch(parts[4]):
        return parts[4]
    return None


# ---------------------------------------------------------------- the callable ApiApp takes


class RequestAuthorizer:
    CACHE_ENTRIES = 8192

    def __init__(self, authorizer: Authorizer, *, function_facts: FunctionFacts | None = None,
                 generation: Callable[[], int] | None = None, layer_policies: LayerPolicies | None = None,
                 queue_policies: QueuePolicies | None = None, queue_generation: Callable[[], int] | None = None):
        self.authorizer = authorizer
        self.function_facts = function_facts
        self.layer_policies = layer_policies      # services/layers.py: AddLayerVersionPermission's policies
        self.generation = generation or (lambda: -1)
        self.queue_policies = queue_policies      # queues/policy.py: a queue's Policy attribute
        self.queue_generation = queue_generation or (lambda: -1)
        self._facts: dict[tuple, tuple[int, Policy | None, dict[str, str]]] = {}

    def _function(self, region: str, account: str, name: str, qualifier: str | None
                  ) -> tuple[Policy | None, dict[str, str]]:
        key = (region, account, name, qualifier)
        generation = self.generation()          # noted before reading: a concurrent write moves it
        hit = self._facts.get(key)
        if hit is not None and hit[0] == generation and generation >= 0:
            return hit[1], hit[2]
        document, tags = self.function_facts(region, account, name, qualifier)
        policy = None
        if document:
            try:
                policy = parse_policy(document, "resource", label=f"function-policy:{name}")
            except MalformedPolicy:
                policy = None
        found = (policy, dict(tags or {}))
        if len(self._facts) >= self.CACHE_ENTRIES:
            self._facts.clear()
        self._facts[key] = (generation, *found)
        return found

    def _layer_version(self, region: str, account: str, name: str, version: int) -> Policy | None:
        """Cached like function facts (every layer write bumps the same generation)."""
        return self._cached_policy(("layer", region, account, name, version), self.generation(),
                                   lambda: self.layer_policies(region, account, name, version),
                                   f"layer-version-policy:{name}:{version}")

    def _queue(self, region: str, account: str, name: str) -> Policy | None:
        """A queue's policy, cached against the queue service's generation (every queue write moves it)."""
        return self._cached_policy(("queue", region, account, name), self.queue_generation(),
                                   lambda: self.queue_policies(region, account, name), f"queue-policy:{name}")

    def _cached_policy(self, key: tuple, generation: int, load: Callable[[], str | None], label: str
                       ) -> Policy | None:
        """A resource policy by `key`, parsed once per `generation` (a negative one is never cached);
        a document that does not parse counts as no policy."""
        hit = self._facts.get(key)
        if hit is not None and hit[0] == generation and generation >= 0:
            return hit[1]
        document, policy = load(), None
        if document:
            try:
                policy = parse_policy(document, "resource", label=label)
            except MalformedPolicy:
                policy = None
        if len(self._facts) >= self.CACHE_ENTRIES:
            self._facts.clear()
        self._facts[key] = (generation, policy, {})
        return policy

    def __call__(self, service: str, operation: str, params: Mapping[str, Any], ctx: RequestContext
                 ) -> RequestContext:
        """Raises AccessDeniedException (AWS's wording, 403) or returns the context the operation
        runs with (the same one, or the resource owner's scope for an allowed cross-account call)."""
        if service in SELF_AUTHORIZING or (service == "kms" and operation not in KMS_ACCOUNT_LEVEL):
            return ctx
        action, arn, keys = map_request(service, operation, params or {}, ctx)
        policy = None
        if service == "lambda" and self.function_facts is not None:
            m = _FUNCTION_ARN.fullmatch(arn)
            if m:
                policy, tags = self._function(m["region"], m["account"], m["name"], m["qualifier"])
                for k, v in tags.items():
                    keys.setdefault(f"aws:ResourceTag/{k}", v)
                if operation == "RemovePermission" and policy is not None:
                    keys.update(removed_statement_keys(policy, params.get("StatementId")))
        if service == "lambda" and self.layer_policies is not None:
            m = _LAYER_VERSION_ARN.fullmatch(arn)
            if m:       # another account may use a layer version its policy grants (lambda:GetLayerVersion)
                policy = self._layer_version(m["region"], m["account"], m["name"], int(m["version"]))
        if service == "sqs" and self.queue_policies is not None:
            m = _QUEUE_ARN.fullmatch(arn)
            if m:       # SQS's access policy: a Deny denies, another account may be granted (both sides)
                policy = self._queue(m["region"], m["account"], m["name"])
        self.authorizer.check(ctx, action, arn, keys, resource_policy=policy)
        owner = resource_account(arn)
        if owner is not None and owner != ctx.account_id:
            return in_account(ctx, owner)
        return ctx
