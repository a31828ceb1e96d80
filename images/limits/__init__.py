"""Limits on untrusted input: how deep, how large and how costly one request, archive or
document may be, checked before anything is built, matched or written.

Every untrusted JSON text (form fields, PATCH/PUT bodies, `filter`, an archive's manifest) is
parsed through `bounded_json`, which refuses excess depth and size while parsing; every pattern
that reaches the database is checked by `patterns` for constructs that backtrack without bound;
`documents` bounds the size of a document's `data` on every write; `archives` bounds what one
import may unpack; `disk` keeps a floor of free space on local storage; `numbers` bounds the
integers and dates the database is given. Each module holds one kind of limit, its settings
are in `imagestore/settings.py` (Limits block) and the limits table of docs/configuration.md.
"""
