"""Storing new bytes for documents: staged first, then, under the keys' leases, promoted and
their documents written in the order that never exposes a document without its bytes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import IO

from images.runtime.offload import cooperate
from images.store.files import PATH_CONFLICTS, FileStore, new_staging_key
from images.writes.leases import Held, Intent, Leases, may_have_applied
from images.writes.recovery import recover, referenced_keys

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StagedFile:
    """New bytes for `key`, waiting at `staging`."""

    key: str
    staging: str
    sha256: str
    size: int


@dataclass
class Placement:
    """Where the staged files of one held group stand before their documents are written."""

    new: list[StagedFile] = field(default_factory=list)  # at their key, which held no bytes
    replaced: list[StagedFile] = field(default_factory=list)  # still staged, durably
    blocked: list[StagedFile] = field(default_factory=list)  # path conflicts: dropped


# Inserts the document of a new key; False when a document already has the key (or the id the
# client chose), which it leaves as it is.
InsertDocument = Callable[[], bool]

# Writes the documents of the staged files it is given (the second argument: the keys that held
# no bytes, whose document is most likely new); returns the keys whose document it wrote (the
# others, refused for a conflict, get their staged bytes dropped).
WriteDocuments = Callable[[list[StagedFile], Collection[str]], Collection[str]]


class FileWriter:
    def __init__(self, files: FileStore) -> None:
        self.files = files
        self.leases = Leases(lambda key, lease: recover(files, key, lease))

    # --- staging (no lease: the staging key is this writer's alone) ---------------------------
    def stage(self, key: str, source: IO[bytes], sha256: str, size: int) -> StagedFile:
        self.files.check_writable(key)
        staged = StagedFile(key, new_staging_key(), sha256, size)
        self.files.stage(source, staged.staging)
        return staged

    def stage_path(self, key: str, source_path: str, sha256: str, size: int) -> StagedFile:
        self.files.check_writable(key)
        staged = StagedFile(key, new_staging_key(), sha256, size)
        self.files.stage_path(source_path, staged.staging)
        return staged

    def _drop_staged(self, staged: list[StagedFile]) -> None:
        """Staged bytes of a write given up before its lease: those `create` linked to their key
        are settled under the key's lease once it is free; the others are dropped."""
        for item in staged:
            if self.files.same_file(item.staging, item.key):
                self.leases.settle_unleased(item.key, Intent(item.staging, item.sha256))
            else:
                self.discard([item])

    def discard(self, staged: Collection[StagedFile]) -> None:
        for item in staged:
            try:
                self.files.delete(item.staging)
            except Exception:
                logger.warning("Could not remove staged bytes %s", item.staging, exc_info=True)

    # --- one new key, without a lease ----------------------------------------------------------
    def create(self, item: StagedFile, insert: InsertDocument) -> bool:
        """Store the bytes of a key that holds none, and insert its document, with no lease:
        the insert is the write's one database command. False, with the bytes still staged,
        when the key holds bytes, a document has it, or the store cannot link: then `commit`.

        Linking fails when any file is at the key, so nothing is replaced. A deleter of an
        older document at the key moves its file aside before asking whether a document uses
        the key (`FileStore.remove_unreferenced`), so the check after the insert finds every
        file it moved that this document needs, and the key's lease settles that case."""
        try:
            if not self.files.link_if_absent(item.staging, item.key):
                return False
        except PATH_CONFLICTS:
            return False  # `commit` meets the conflict again and drops the staged bytes
        try:
            self.files.make_durable([item.key])
            inserted = insert()
        except FileNotFoundError:  # moved aside before the fsync: a deleter removes it
            return False
        except BaseException:
            self.leases.settle_unleased(item.key, Intent(item.staging, item.sha256))
            raise
        if inserted and not self.files.same_file(item.staging, item.key):
            logger.info("The file of %s was moved aside meanwhile: putting it back", item.key)
            self.leases.settle(item.key, Intent(item.staging, item.sha256))
        elif inserted:
            self.files.unlink_staging(item.staging)
        return inserted

    # --- commit -------------------------------------------------------------------------------
    def commit(self, staged: list[StagedFile], write_documents: WriteDocuments) -> set[str]:
        """Promote the staged files and write their documents; the keys whose document was
        written. Keys must be distinct."""
        by_key = {item.key: item for item in staged}
        intents = {item.key: Intent(item.staging, item.sha256) for item in staged}
        written: set[str] = set()
        done: set[str] = set()
        try:
            for held in self.leases.rounds(intents):
                items = [by_key[key] for key in held.keys]
                done.update(held.keys)
                written |= self._commit_held(held, items, write_documents)
        except BaseException:  # staged bytes no lease records are this writer's to drop
            self._drop_staged([item for key, item in by_key.items() if key not in done])
            raise
        return written

    def _commit_held(
        self, held: Held, items: list[StagedFile], write_documents: WriteDocuments
    ) -> set[str]:
        """New keys: bytes first, then the document (a failure removes the bytes again).
        Replaced keys: the document first, then the bytes (a failure keeps the old bytes,
        whose document was not replaced)."""
        placement = Placement()
        try:
            self._place(items, placement)
        except Exception:
            self._undo(placement.new, [item for item in items if item not in placement.new])
            self.leases.release_quietly(held)
            raise
        new, replaced = placement.new, placement.replaced
        items = new + replaced
        try:
            new_keys = {item.key for item in new}
            written = set(write_documents(items, new_keys)) if items else set()
        except BaseException as error:
            if may_have_applied(error):
                logger.warning("Document write of %d files uncertain: settled later", len(items))
                self.leases.settle_later(held)
                raise
            self._undo(new, replaced)
            self.leases.release_quietly(held)
            raise
        self._undo(
            [item for item in new if item.key not in written],
            [item for item in replaced if item.key not in written],
        )
        for item in replaced:
            if item.key in written:
                self.files.promote(item.staging, item.key, item.size)  # fails: recovery
        self.leases.release_quietly(held)  # done (a database gone meanwhile: settled later)
        return written

    def _place(self, items: list[StagedFile], placement: Placement) -> None:
        """Link the bytes of keys that hold none to their key (`new`); keys that hold bytes,
        or that a document references where the store cannot link, get theirs after the
        document (`replaced`); path conflicts are dropped (`blocked`). Then everything a
        document is about to name is made durable, in one batch."""
        linked: list[StagedFile] = []
        undecided: list[StagedFile] = []
        for item in items:
            cooperate()  # an import's batch: hundreds of links on a gevent worker's loop
            try:
                placed = self.files.link_if_absent(item.staging, item.key)
            except PATH_CONFLICTS:
                self._block(item, placement)
                continue
            if placed is None:
                undecided.append(item)
            else:
                (linked if placed else placement.replaced).append(item)
            if placed:
                placement.new.append(item)
        referenced = referenced_keys(item.key for item in undecided)
        placement.replaced += [item for item in undecided if item.key in referenced]
        promoted = [item for item in undecided if item.key not in referenced]
        for item in promoted:
            self._promote_new(item, placement)
        self.files.make_durable(
            [item.key for item in placement.new] + [item.staging for item in placement.replaced]
        )
        for item in linked:
            self.files.unlink_staging(item.staging)

    def _promote_new(self, item: StagedFile, placement: Placement) -> None:
        """Promote the bytes of a key no document references (so undoing may remove it)."""
        placement.new.append(item)
        try:
            self.files.promote(item.staging, item.key, item.size)
        except PATH_CONFLICTS:
            placement.new.remove(item)
            self._block(item, placement)

    def _block(self, item: StagedFile, placement: Placement) -> None:
        """A key whose path collides with a stored folder or file: its document is not written."""
        self.files.delete(item.staging)
        placement.blocked.append(item)

    def _undo(self, new: list[StagedFile], replaced: list[StagedFile]) -> None:
        """Remove what a write that did not land left: new keys' files (no document uses
        them: the lease kept every other writer out) and replacing bytes still staged, with
        the key's file when it is those very bytes (linked by `create` before it found the key
        taken)."""
        linked = [item for item in replaced if self.files.same_file(item.staging, item.key)]
        for item in new + linked:
            self.files.delete(item.key)
            self.files.delete(item.staging)
        self.discard([item for item in replaced if item not in linked])
