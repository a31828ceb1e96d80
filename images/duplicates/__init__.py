"""Same bytes stored twice: the `on_duplicate` policy of uploads and imports, and the groups of
an owner's documents that share a `sha256`.

`policy` reads `on_duplicate` (`reject` or `skip`; absent: the original's behaviour, store
anyway) and finds the stored copy an upload would repeat: the oldest document in scope with the
same `sha256` at another path. Uploads with a policy hold a short claim on their hash
(`claims`) from that check until their document is written, so two of them sending the same
bytes at once cannot both store it. `groups` pages through the owner's hashes in `sha256` index
order, holding one hash at a time, and lists the documents of each hash found more than once.

Near-copies: `perceptual` hashes a picture (pHash) and splits the hash into indexed bands;
`near_copies` finds the pictures within a Hamming distance through that index; `near_groups`
pages through an owner's pictures for groups of near-copies and for pairs whose split field
differs (leaks). `policy` applies `similar` (a near-copy counts as a copy) and `check_leak`.
Near-copies take no claim: two near-copies uploaded at the same moment may both be stored.
"""

from images.duplicates.groups import DuplicatePage, duplicate_groups
from images.duplicates.policy import OnDuplicate, stored_copy

__all__ = [
    "DuplicatePage",
    "OnDuplicate",
    "duplicate_groups",
    "stored_copy",
]
