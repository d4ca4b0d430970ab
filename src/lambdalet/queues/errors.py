"""SQS's errors. `code` is the error shape name in botocore's SQS model (what `__type` carries);
`query_code` is the legacy query-protocol code that awsQueryCompatible clients surface as
`ClientError.response["Error"]["Code"]` (sent in the `x-amzn-query-error` header)."""
from __future__ import annotations

from lambdalet.models.errors import AwsError


class SqsError(AwsError):
    code = "InvalidParameterValue"
    query_code = "InvalidParameterValue"
    status = 400
    sender_fault = True


def _sqs(code: str, query_code: str, status: int = 400) -> type[SqsError]:
    return type(code, (SqsError,), {"code": code, "query_code": query_code, "status": status,
                                    "sender_fault": status < 500})


# Modelled (botocore's sqs error shapes).
QueueDoesNotExist = _sqs("QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue")
QueueNameExists = _sqs("QueueNameExists", "QueueAlreadyExists")
QueueDeletedRecently = _sqs("QueueDeletedRecently", "AWS.SimpleQueueService.QueueDeletedRecently")
InvalidAttributeName = _sqs("InvalidAttributeName", "InvalidAttributeName")
InvalidAttributeValue = _sqs("InvalidAttributeValue", "InvalidAttributeValue")
ReceiptHandleIsInvalid = _sqs("ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid")
MessageNotInflight = _sqs("MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight")
TooManyEntriesInBatchRequest = _sqs("TooManyEntriesInBatchRequest",
                                    "AWS.SimpleQueueService.TooManyEntriesInBatchRequest")
BatchEntryIdsNotDistinct = _sqs("BatchEntryIdsNotDistinct", "AWS.SimpleQueueService.BatchEntryIdsNotDistinct")
EmptyBatchRequest = _sqs("EmptyBatchRequest", "AWS.SimpleQueueService.EmptyBatchRequest")
InvalidBatchEntryId = _sqs("InvalidBatchEntryId", "AWS.SimpleQueueService.InvalidBatchEntryId")
BatchRequestTooLong = _sqs("BatchRequestTooLong", "AWS.SimpleQueueService.BatchRequestTooLong")
InvalidMessageContents = _sqs("InvalidMessageContents", "InvalidMessageContents")
PurgeQueueInProgress = _sqs("PurgeQueueInProgress", "AWS.SimpleQueueService.PurgeQueueInProgress")
UnsupportedOperation = _sqs("UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation")
OverLimit = _sqs("OverLimit", "OverLimit", 403)
# Not modelled, but SQS's common errors (boto3 raises a plain ClientError with this code).
InvalidParameterValue = _sqs("InvalidParameterValue", "InvalidParameterValue")
MissingParameter = _sqs("MissingParameter", "MissingParameter")
