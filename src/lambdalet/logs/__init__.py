"""Function logs (CloudWatch Logs-compatible): the sealed store the sandboxes' log sinks write to,
and the API subset (`LogsService`) that `aws logs` and boto3's `logs` client read it through."""
from lambdalet.logs.store import LogSink, LogStore
from lambdalet.logs.service import LogsService

__all__ = ["LogSink", "LogStore", "LogsService"]
