"""awsJson 1.1 as AWS Organizations answers it (the service: iam/organizations_service.py)."""
from __future__ import annotations

from lambdalet.api.json_protocol import InvalidParameterValue, JsonProtocol, MissingParameter, SerializationException
from lambdalet.iam.organizations import InvalidInputException


class OrganizationsProtocol(JsonProtocol):
    """Input the protocol refuses (bad JSON, wrong types, unknown or missing members) is
    InvalidInputException, the code Organizations' clients expect."""

    def parse(self, op, req, labels):
        try:
            return super().parse(op, req, labels)
        except MissingParameter as e:
            raise InvalidInputException(e.message, reason="INPUT_REQUIRED") from None
        except (SerializationException, InvalidParameterValue) as e:
            raise InvalidInputException(e.message) from None
