"""The HTTP edge: views, authentication, middleware, negotiation, errors and responses.

Only this package (and the management commands' argument handling) speaks HTTP or DRF; it turns
requests into calls on the capabilities (`writes`, `archives`, `thumbnails`, `duplicates`) and the
stores, and their results and errors into responses.
"""
