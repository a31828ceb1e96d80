"""Persistence: the MongoDB repository and the file stores (local disk or S3)."""
