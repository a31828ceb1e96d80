"""Same bytes stored twice: the `on_duplicate` policy of uploads and imports, and the groups of
an owner's documents that share a `sha256`.

`policy` reads `on_duplicate` (`reject` or `skip`; absent: the original's behaviour, store
anyway) and finds the stored copy an upload would repeat: the oldest document in scope with the
same `sha256` at another path. Uploads with a policy hold a short claim on their hash
(`claims`) from that check until their document is written, so two of them sending the same
bytes at once cannot both store it. `groups` pages through the owner's hashes in `sha256` index
order, holding one hash at a time, and lists the documents of each hash found more than once.
"""

from images.duplicates.groups import DuplicatePage, duplicate_groups
from images.duplicates.policy import OnDuplicate, stored_copy

__all__ = [
    "DuplicatePage",
    "OnDuplicate",
    "duplicate_groups",
    "stored_copy",
]
