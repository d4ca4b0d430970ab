"""HTTP front: SigV4, routing by AWS service and operation, AWS-shaped errors."""
