"""server/bindings.py: the operations table is checked against botocore's model when the server starts.

The integration tests prove the real table serves every operation (tests/conformance); these prove
that a table that disagrees with the model stops the server instead of routing silently."""
from __future__ import annotations

import pytest

from lambdalet.models.service_model import load_service_model
from lambdalet.server.bindings import (EVERY, LAMBDA_ASYNC_EVENTS, LAMBDA_CONTROL_PLANE, LAMBDA_EVENT_SOURCE_MAPPINGS,
                                       LAMBDA_FUNCTION_URLS, LAMBDA_INVOKER, BindingError, Row, table_for)
from lambdalet.services.lambda_service import LambdaService
from lambdalet.invoke.invoker import Invoker
from lambdalet.events import AsyncEvents
from lambdalet.events.esm import EventSourceMappings
from lambdalet.services.function_urls import FunctionUrlService

LAMBDA = load_service_model("lambda")


class Invoke:
    def invoke(self, ctx, params):
        return {"StatusCode": 200}


class InvokeAndAsync(Invoke):
    def invoke_async(self, ctx, params):
        return {"Status": 202}


class Deferrable:
    def list_functions(self, ctx, params):
        return {}

    def list_functions_deferrable(self, ctx, params):
        return {}


def test_each_bound_operation_maps_to_its_objects_method():
    obj = Invoke()
    assert table_for(LAMBDA, [Row(obj, ("Invoke",))]) == {"Invoke": obj.invoke}


def test_an_operation_the_model_does_not_name_stops_start_up():
    with pytest.raises(BindingError, match="does not name"):
        table_for(LAMBDA, [Row(Invoke(), ("Invoke", "InvokeFaster"))])


def test_an_operation_bound_twice_stops_start_up():
    with pytest.raises(BindingError, match="Invoke is bound twice"):
        table_for(LAMBDA, [Row(Invoke(), ("Invoke",)), Row(Invoke(), ("Invoke",))])


def test_an_operation_bound_to_an_object_without_its_method_stops_start_up():
    with pytest.raises(BindingError, match="InvokeAsync is bound to Invoke, which has no method"):
        table_for(LAMBDA, [Row(Invoke(), ("Invoke", "InvokeAsync"))])


def test_a_method_its_row_leaves_out_stops_start_up():
    with pytest.raises(BindingError, match=r"has methods for \['InvokeAsync'\]"):
        table_for(LAMBDA, [Row(InvokeAndAsync(), ("Invoke",))])


def test_an_every_row_binds_what_its_object_implements_and_must_serve_something():
    obj = InvokeAndAsync()
    assert table_for(LAMBDA, [Row(obj, EVERY)]) == {"Invoke": obj.invoke, "InvokeAsync": obj.invoke_async}
    with pytest.raises(BindingError, match="serves none"):
        table_for(LAMBDA, [Row(object(), EVERY)])


def test_the_deferrable_variant_is_what_gets_bound():
    obj = Deferrable()
    assert table_for(LAMBDA, [Row(obj, ("ListFunctions",))])["ListFunctions"] == obj.list_functions_deferrable


def test_the_lambda_rows_match_the_classes_that_serve_them():
    """The server's own Lambda rows, checked against the classes (no platform needed): every row is
    complete and no operation has two owners."""
    rows = [Row(cls.__new__(cls), ops) for cls, ops in (
        (LambdaService, LAMBDA_CONTROL_PLANE), (Invoker, LAMBDA_INVOKER), (AsyncEvents, LAMBDA_ASYNC_EVENTS),
        (EventSourceMappings, LAMBDA_EVENT_SOURCE_MAPPINGS), (FunctionUrlService, LAMBDA_FUNCTION_URLS))]
    table = table_for(LAMBDA, rows)
    assert len(table) == sum(len(r.operations) for r in rows)
