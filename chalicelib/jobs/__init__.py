"""The job core: model, store (DynamoDB), queue (SQS) and the worker loop."""
