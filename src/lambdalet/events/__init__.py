"""Asynchronous invocation (Invoke with InvocationType=Event, InvokeAsync), event invoke
configuration, destinations and dead-letter queues.

    async_invoke.py   accept: validate, queue durably (group commit), 202
    poller.py         deliver: claim, Invoker.run, retries/backoff/age, ack after the outcome
    acks.py           the poller's acks/nacks, applied in batches (one transaction per dispatcher round)
    destinations.py   OnSuccess/OnFailure records and DLQ messages, to a queue or a function
    invoke_config.py  Put/Get/Update/Delete/ListFunctionEventInvokeConfigs
    messages.py       the queued message; tables.py the two tables (migration 0004)

`AsyncEvents` is what the server builds (server/platform.py): server/bindings.py binds InvokeAsync and
the five *FunctionEventInvokeConfig operations to it; `AsyncInvocations.submit_invoke` is the Event
branch of `Invoker.invoke` (handed to the Invoker as a function: no reference back).
"""
from __future__ import annotations

from lambdalet.events.async_invoke import (EVENT_PAYLOAD_LIMIT, INTERNAL_ACCOUNT, INVOKE_ASYNC_LIMIT,
                                           AsyncInvocations)
from lambdalet.events.destinations import Destinations
from lambdalet.events.invoke_config import EventInvokeConfigs
from lambdalet.events.messages import EventMessage
from lambdalet.events.poller import EventPoller

__all__ = ["AsyncEvents", "AsyncInvocations", "EventInvokeConfigs", "EventPoller", "Destinations", "EventMessage",
           "INTERNAL_ACCOUNT", "EVENT_PAYLOAD_LIMIT", "INVOKE_ASYNC_LIMIT", "async_events",
           "build_async_events"]


class AsyncEvents:
    def __init__(self, invocations: AsyncInvocations, configs: EventInvokeConfigs, poller: EventPoller):
        self.invocations = invocations
        self.configs = configs
        self.poller = poller

    # ---- the Event branch of Invoke (called by Invoker.invoke) and InvokeAsync ----
    def submit_invoke(self, ctx, params, target=None) -> dict:
        return self.invocations.submit_invoke(ctx, params, target)

    def invoke_async(self, ctx, params) -> dict:
        return self.invocations.invoke_async(ctx, params)

    # ---- event invoke config operations ----
    def put_function_event_invoke_config(self, ctx, params) -> dict:
        return self.configs.put_function_event_invoke_config(ctx, params)

    def update_function_event_invoke_config(self, ctx, params) -> dict:
        return self.configs.update_function_event_invoke_config(ctx, params)

    def get_function_event_invoke_config(self, ctx, params) -> dict:
        return self.configs.get_function_event_invoke_config(ctx, params)

    def delete_function_event_invoke_config(self, ctx, params) -> dict:
        return self.configs.delete_function_event_invoke_config(ctx, params)

    def list_function_event_invoke_configs(self, ctx, params) -> dict:
        return self.configs.list_function_event_invoke_configs(ctx, params)

    def start(self) -> None:
        self.poller.start()

    def close(self, timeout: float = 10.0) -> None:
        self.poller.close(timeout)


def build_async_events(db, keyring, queues, invoker, resolver, settings, *, authority=None) -> AsyncEvents:
    """The component for an invoker built without it (harnesses); the server builds AsyncInvocations
    first, hands its `submit_invoke` to the Invoker, then calls `async_events` (server/platform.py)."""
    invocations = AsyncInvocations(db, keyring, queues, invoker.resolve, settings.region)
    return async_events(db, queues, invocations, invoker, resolver, settings, authority=authority)


def async_events(db, queues, invocations: AsyncInvocations, invoker, resolver, settings, *,
                 authority=None) -> AsyncEvents:
    """Configs, destinations and the poller around `invocations`: the poller runs `invoker`;
    `resolver` is the control plane's FunctionResolver (the version's role and DeadLetterConfig);
    `authority` (events/authority.RoleAuthority) checks destinations as the function's role."""
    configs = EventInvokeConfigs(db, queues, authority=authority)

    def role_of(msg: EventMessage) -> str:
        return resolver.resolve_version(msg.account_id, msg.function_name, msg.qualifier, msg.region).role

    destinations = Destinations(queues, invocations.enqueue, role_of, authority=authority)

    def dead_letter_of(msg: EventMessage) -> str | None:
        return resolver.resolve_version(msg.account_id, msg.function_name, msg.qualifier,
                                        msg.region).dead_letter_target_arn

    poller = EventPoller(invocations, configs, destinations, invoker, dead_letter_of,
                         workers=settings.async_workers, retry_scale=settings.async_retry_scale)
    return AsyncEvents(invocations, configs, poller)
