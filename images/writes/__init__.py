"""The write path: every change to an image's bytes or to which documents exist goes through here
(upload and re-upload, import, delete, bulk delete, `check_integrity --fix`).

An image's file stays at its key (`<file>`, or `<userId>/<file>` under per-user scope), in the
uploads directory or the bucket. Three rules keep the file and the documents that reference it
in agreement, across threads and across service replicas that share MongoDB and the storage:

1. New bytes are never written at a key a document points to. They are *staged* at
   `.imagestore/staging/<random>`, hashed on the way in, before any lease is taken, so a slow
   upload holds nothing.
2. Everything after staging happens under the key's *lease* (`leases`): a MongoDB document with
   the key as its unique `_id`, an expiry, and the staging key and sha256 of the bytes about to
   land. For a key that holds no bytes, they are placed there durably (on local disk a hard
   link, which replaces nothing; on S3, after the documents say no image uses the key, a copy)
   and then the document is written; if that write fails, the bytes are removed. For a key that
   holds bytes, the staged ones are made durable, the document is written first and the bytes
   promoted after (a rename); if the write fails, the staged bytes are dropped and the previous
   bytes and document stay whole. Deletes
   take the lease too, remove the document, and then the file only if no document of any owner
   references the key any more.
3. A writer whose database write failed in a way that may still have landed (a dropped
   connection, a failover) settles its leases in the background as soon as the database
   answers again: it runs `recovery` on each key from what the database now holds, then
   releases it. A writer that dies leaves its lease; whoever takes the expired lease next (a
   writer of the same key, or `check_integrity --fix`) runs `recovery` first. Recovery promotes
   staged bytes whose sha256 a document now carries, drops other staged bytes, and empties a
   key no document references.

PATCH and PUT change only `data` by `_id`; they never touch `file`, the facts or the bytes, so
they need no lease. Thumbnails are a cache outside these rules. Leases are no lock server: a
writer stalled past `WRITE_LEASE_SECONDS` between taking its lease and finishing could act
after a successor recovered; leases are held only for a rename or copy and one document write
(a batch for imports), far below that limit. Replicas' clocks must agree to well within it.
"""

from images.writes.commit import FileWriter, StagedFile, WriteDocuments
from images.writes.deletes import Deleter
from images.writes.leases import Intent, Leases, PathBusy, ensure_lease_indexes

__all__ = [
    "Deleter",
    "FileWriter",
    "Intent",
    "Leases",
    "PathBusy",
    "StagedFile",
    "WriteDocuments",
    "ensure_lease_indexes",
]
