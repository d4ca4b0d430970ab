"""rest-json as EventBridge Scheduler answers it (the service: schedules/service.py)."""
from __future__ import annotations

from lambdalet.api.protocol import RestJsonProtocol
from lambdalet.models.errors import InvalidParameterValueException
from lambdalet.schedules.service import ValidationException


class SchedulerProtocol(RestJsonProtocol):
    """Malformed input is Scheduler's ValidationException, not Lambda's InvalidParameterValueException."""

    def parse(self, op, req, labels):
        try:
            return super().parse(op, req, labels)
        except InvalidParameterValueException as e:
            raise ValidationException(e.message) from None
