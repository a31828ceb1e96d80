"""The write path: every change to an image's bytes or to which documents exist goes through here
(upload and re-upload, import, delete, bulk delete, `check_integrity --fix`).

An image's file stays at its key (`<file>`, or `<userId>/<file>` under per-user scope), in the
uploads directory or the bucket. Four rules keep the file and the documents that reference it
in agreement, across threads and across service replicas that share MongoDB and the storage:

1. New bytes are never written at a key a document points to. They are *staged* at
   `.imagestore/staging/<random>`, hashed on the way in, before any lease is taken, so a slow
   upload holds nothing.
2. A new key on local disk needs no lease (`FileWriter.create`): the staged bytes are hard
   linked to the key (which fails, replacing nothing, when any file is there), made durable,
   and the document inserted: one database command. If the insert finds the key taken, the
   write goes on under the lease as below. Afterwards the writer checks that the key is still
   its staged file: a deleter may have moved it aside meanwhile (rule 3), and then the key's
   lease and `recovery` put it back.
3. Everything else happens under the key's *lease* (`leases`): a MongoDB document with the key
   as its unique `_id`, an expiry, and the staging key and sha256 of the bytes about to land.
   For a key that holds no bytes, they are placed there durably (on local disk a hard link; on
   S3, after the documents say no image uses the key, a copy) and then the document is
   written; if that write fails, the bytes are removed. For a key that holds bytes, the staged
   ones are made durable, the document is written first and the bytes promoted after (a
   rename); if the write fails, the staged bytes are dropped and the previous bytes and
   document stay whole. Deletes take the lease too and remove the document; then a file no
   document references is removed by moving it aside *before* asking the documents
   (`FileStore.remove_unreferenced`): a document inserted before the question is seen and its
   file put back, one inserted after finds its file gone when its writer checks (rule 2).
4. A writer whose database write failed in a way that may still have landed (a dropped
   connection, a failover) settles its leases in the background as soon as the database
   answers again: it runs `recovery` on each key from what the database now holds, then
   releases it. A writer that dies leaves its lease; whoever takes the expired lease next (a
   writer of the same key, or `check_integrity --fix`) runs `recovery` first. Recovery promotes
   staged bytes whose sha256 a document now carries, drops other staged bytes, and empties a
   key no document references.

`tests/test_write_protocol_model.py` checks these rules against every interleaving of two
writers and a deleter of one key, with and without a crash at any step.

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
