"""The process, not the request: serving, the embedded database, off-loop work, metrics, logs."""
