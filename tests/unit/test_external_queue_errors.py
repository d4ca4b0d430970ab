"""Errors of an external SQS-compatible endpoint, as a tenant sees them (CreateEventSourceMapping's
message, a mapping's LastProcessingResult): never the operator's endpoint address (issue 21.9).
A real botocore client against a closed local port, and a remote error that names the endpoint."""
from __future__ import annotations

import os
import socket

import pytest
from botocore.exceptions import ClientError

from lambdalet.crypto import Keyring, MemoryKeyMaterialStore
from lambdalet.events.sources import ExternalSqsSource, SqsEndpointRegistry
from lambdalet.models.errors import AwsError

ARN = "arn:aws:sqs:us-east-1:111122223333:orders"


@pytest.fixture
def registry(tmp_path):
    return SqsEndpointRegistry(tmp_path, Keyring.open(os.urandom(32), MemoryKeyMaterialStore()), recheck_s=0)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]            # closed again when the block ends: connecting is refused


def test_an_unreachable_endpoint_is_reported_without_its_address(registry):
    url = f"https://127.0.0.1:{_closed_port()}"
    registry.add("ops", url, account="111122223333", access_key="AK", secret_key="S")
    with pytest.raises(AwsError) as ei:
        ExternalSqsSource(registry, ARN, "000000000000").attributes(ARN, ["VisibilityTimeout"])
    message = ei.value.message
    assert "could not be reached" in message and ARN in message, message
    assert url.split("//")[1] not in message and "127.0.0.1" not in message, message


class _Remote:
    """An SQS-compatible service whose errors quote its own address."""

    def __init__(self, url: str):
        self.url = url

    def get_queue_url(self, QueueName, QueueOwnerAWSAccountId):
        return {"QueueUrl": f"{self.url}/{QueueOwnerAWSAccountId}/{QueueName}"}

    def get_queue_attributes(self, QueueUrl, AttributeNames):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": f"no access to {QueueUrl} via "
                                     f"{self.url.split('//')[1]}"},
                           "ResponseMetadata": {"HTTPStatusCode": 403}}, "GetQueueAttributes")


def test_a_remote_error_keeps_its_code_but_not_the_endpoint(registry):
    url = "https://sqs.ops-internal.example:8443"
    registry.add("ops", url, account="111122223333", access_key="AK", secret_key="S")
    src = ExternalSqsSource(registry, ARN, "000000000000", client_factory=lambda ep, region: _Remote(ep.url))
    with pytest.raises(AwsError) as ei:
        src.attributes(ARN, ["VisibilityTimeout"])
    assert ei.value.code == "AccessDenied" and ei.value.status == 403
    assert "ops-internal" not in ei.value.message and "<endpoint>" in ei.value.message, ei.value.message
