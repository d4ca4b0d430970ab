"""SQS-compatible queues: the user-facing SQS API and the platform's internal durable queue."""
from lambdalet.queues.service import Message, Queue, QueueService

__all__ = ["Message", "Queue", "QueueService"]
