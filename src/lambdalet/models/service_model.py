"""AWS's service models (botocore's, our wire contract) and the operation -> method naming.

Neutral ground: api/ routes and (de)serializes by these models, audit/ redacts records by their
shapes, and services name their methods `snake_case(Operation)`; none of them should import
another's layer to get them.
"""
from __future__ import annotations

import re

import botocore.session
from botocore.model import ServiceModel

_SESSION = botocore.session.get_session()


def load_service_model(name: str) -> ServiceModel:
    """botocore's model of one service (`lambda`, `sqs`, ...); botocore caches the parsed files."""
    return _SESSION.get_service_model(name)


def snake_case(name: str) -> str:
    """The method that serves an operation: CreateFunction -> create_function, ListTagsForResource ->
    list_tags_for_resource, GetKMSKey -> get_kms_key."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
