"""Control-plane use cases: the Lambda API as plain methods (LambdaService), split by resource."""
