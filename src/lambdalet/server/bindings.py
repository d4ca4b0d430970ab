"""Which object serves which operation, for every service on this endpoint: the one table API
dispatch reads (api/app.ServiceBinding.table).

A row names its object and the operations it serves, or EVERY for a service one object serves
whole (its methods named `snake_case(Operation)`; unimplemented operations answer a modelled 4xx).
`bind` checks the rows against botocore's model of the service when the server starts, and stops
it (BindingError) for an operation the model does not name, an operation bound twice, an operation
bound to an object with no method for it, or a method for a model operation that an explicit row
leaves out (a new method is bound here, or it is not served).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from botocore.model import ServiceModel

from lambdalet.api.app import ServiceBinding
from lambdalet.models.service_model import load_service_model, snake_case

EVERY = None     # a row's operations: every operation of the model its object has a method for


class BindingError(RuntimeError):
    """The bindings table disagrees with a service model: the server does not start."""


@dataclass(frozen=True)
class Row:
    serves: Any
    operations: tuple[str, ...] | None = EVERY


# ---- the Lambda API: five objects, each listed with the operations it serves ---------------------
LAMBDA_CONTROL_PLANE = (      # services.LambdaService, one module per resource behind it
    "CreateFunction", "GetFunction", "GetFunctionConfiguration", "ListFunctions", "UpdateFunctionCode",
    "UpdateFunctionConfiguration", "DeleteFunction",
    "PublishVersion", "ListVersionsByFunction",
    "CreateAlias", "GetAlias", "UpdateAlias", "DeleteAlias", "ListAliases",
    "AddPermission", "RemovePermission", "GetPolicy",
    "TagResource", "UntagResource", "ListTags",
    "PutFunctionConcurrency", "GetFunctionConcurrency", "DeleteFunctionConcurrency", "GetAccountSettings",
    "PublishLayerVersion", "GetLayerVersion", "GetLayerVersionByArn", "ListLayerVersions", "ListLayers",
    "DeleteLayerVersion", "AddLayerVersionPermission", "RemoveLayerVersionPermission", "GetLayerVersionPolicy",
    "CreateCodeSigningConfig", "GetCodeSigningConfig", "UpdateCodeSigningConfig", "DeleteCodeSigningConfig",
    "ListCodeSigningConfigs", "ListFunctionsByCodeSigningConfig", "PutFunctionCodeSigningConfig",
    "GetFunctionCodeSigningConfig", "DeleteFunctionCodeSigningConfig",
    "GetRuntimeManagementConfig", "PutRuntimeManagementConfig",
    "GetFunctionRecursionConfig", "PutFunctionRecursionConfig",
)
LAMBDA_INVOKER = ("Invoke", "InvokeWithResponseStream")      # invoke.Invoker (the Event branch queues)
LAMBDA_ASYNC_EVENTS = (                                       # events.AsyncEvents
    "InvokeAsync", "PutFunctionEventInvokeConfig", "UpdateFunctionEventInvokeConfig",
    "GetFunctionEventInvokeConfig", "DeleteFunctionEventInvokeConfig", "ListFunctionEventInvokeConfigs",
)
LAMBDA_EVENT_SOURCE_MAPPINGS = (                              # events.esm.EventSourceMappings
    "CreateEventSourceMapping", "GetEventSourceMapping", "UpdateEventSourceMapping",
    "DeleteEventSourceMapping", "ListEventSourceMappings",
)
LAMBDA_FUNCTION_URLS = (                                      # services.function_urls.FunctionUrlService
    "CreateFunctionUrlConfig", "GetFunctionUrlConfig", "UpdateFunctionUrlConfig", "DeleteFunctionUrlConfig",
    "ListFunctionUrlConfigs",
)


def method_of(obj: Any, operation: str) -> Callable | None:
    """`<operation>_deferrable` first: a variant that may answer a wait to await on the event loop."""
    attr = snake_case(operation)
    return getattr(obj, attr + "_deferrable", None) or getattr(obj, attr, None)


def table_for(model: ServiceModel, rows: Sequence[Row]) -> dict[str, Callable]:
    """Operation name -> the method serving it; BindingError where the rows and the model disagree."""
    service = model.service_name
    names = set(model.operation_names)
    table: dict[str, Callable] = {}
    owner: dict[str, Any] = {}
    for row in rows:
        kind = type(row.serves).__name__
        if row.operations is EVERY:
            found = {op: m for op in model.operation_names if (m := method_of(row.serves, op)) is not None}
            if not found:
                raise BindingError(f"{service}: {kind} serves none of the model's operations")
        else:
            unknown = [op for op in row.operations if op not in names]
            if unknown:
                raise BindingError(f"{service}: {kind} is bound to {unknown}, which the model does not name")
            found = {}
            for op in row.operations:
                method = method_of(row.serves, op)
                if method is None:
                    raise BindingError(f"{service}: {op} is bound to {kind}, which has no method for it")
                found[op] = method
            left_out = sorted(op for op in names - set(row.operations) if method_of(row.serves, op) is not None)
            if left_out:
                raise BindingError(f"{service}: {kind} has methods for {left_out}, which its row in "
                                   "server/bindings.py does not bind")
        for op, method in found.items():
            if op in table:
                raise BindingError(f"{service}: {op} is bound twice ({type(owner[op]).__name__} and {kind})")
            table[op], owner[op] = method, row.serves
    return table


def bind(model: ServiceModel, protocol: Any, rows: Sequence[Row]) -> ServiceBinding:
    return ServiceBinding(protocol, table=table_for(model, rows))


def service_bindings(*, lambda_service, invoker, async_events, event_source_mappings, function_urls, queues,
                     logs, iam, sts, organizations, kms, cloudtrail, schedules) -> dict[str, ServiceBinding]:
    """Every service this endpoint answers, by its SigV4 signing name."""
    from lambdalet.api.json_protocol import JsonProtocol
    from lambdalet.api.organizations_protocol import OrganizationsProtocol
    from lambdalet.api.protocol import RestJsonProtocol
    from lambdalet.api.query_protocol import QueryProtocol
    from lambdalet.api.scheduler_protocol import SchedulerProtocol
    from lambdalet.kms import KmsBinding

    models = {name: load_service_model(name) for name in
              ("lambda", "sqs", "logs", "iam", "sts", "organizations", "kms", "cloudtrail", "scheduler")}
    return {
        "lambda": bind(models["lambda"], RestJsonProtocol(models["lambda"]), [
            Row(lambda_service, LAMBDA_CONTROL_PLANE),
            Row(invoker, LAMBDA_INVOKER),
            Row(async_events, LAMBDA_ASYNC_EVENTS),
            Row(event_source_mappings, LAMBDA_EVENT_SOURCE_MAPPINGS),
            Row(function_urls, LAMBDA_FUNCTION_URLS)]),
        "sqs": bind(models["sqs"], JsonProtocol(models["sqs"]), [Row(queues)]),
        "logs": bind(models["logs"], JsonProtocol(models["logs"]), [Row(logs)]),
        "iam": bind(models["iam"], QueryProtocol(models["iam"]), [Row(iam)]),
        "sts": bind(models["sts"], QueryProtocol(models["sts"]), [Row(sts)]),
        "organizations": bind(models["organizations"], OrganizationsProtocol(models["organizations"]),
                              [Row(organizations)]),
        # KmsBinding: the service, plus UnsupportedOperationException for every other KMS operation
        "kms": bind(models["kms"], JsonProtocol(models["kms"]), [Row(KmsBinding(kms, models["kms"]))]),
        "cloudtrail": bind(models["cloudtrail"], JsonProtocol(models["cloudtrail"]), [Row(cloudtrail)]),
        "scheduler": bind(models["scheduler"], SchedulerProtocol(models["scheduler"]), [Row(schedules)]),
    }
