"""An explicit-state model checker of the write protocol of one storage key.

What is modelled: one key K of the local file store and the one document that may point to it
(the unique index on (owner, file) allows at most one). Three actors run concurrently: two
uploaders W1 and W2 (the same program, each with bytes of its own, staged beforehand at S1 and
S2) and one deleter D (a delete by filter of whatever document is at K). Every interleaving of
their atomic steps is enumerated by a breadth-first search over the reachable states: the shared
world (file names, the document, the lease, the crashed actors, the last document operation)
together with every actor's local state (program counter, variables and a stack of running
sub-programs). In separate runs one actor may crash at any step and stop forever; its lease
stays held until another actor takes it over, or until the final recovery and the integrity
pass. Every complete run is then checked: the document and the file at K agree, nothing staged
or set aside is left, the document is the one of the last document operation, and no run is
stuck with live actors waiting.

Mapping to the code:

- writer fast path (link the staged bytes to K, insert the document, verify, unlink the staged
  name): `FileWriter.create` in images/writes/commit.py;
- writer leased commit (link or replace under the lease, document before bytes when replacing):
  `FileWriter.commit` in images/writes/commit.py;
- RECOVER (finish or undo the write a lease records): `recover` in images/writes/recovery.py;
- REMOVE-UNREFERENCED (move the file aside, then ask whether a document references it; put it
  back, over bytes another writer linked meanwhile when it holds the document's):
  `remove_unreferenced` in images/store/files/local.py;
- deleter (document first, then the unreferenced file, under the lease): images/writes/deletes.py;
- final integrity pass: `manage.py check_integrity --verify --fix` (images/writes/integrity.py),
  with the right bytes put back from a leftover staged name, and a key that is a leftover staged
  file under a document of other bytes taken back (`Repairer`, images/writes/repair.py).

What is abstracted: a single key; every filesystem call and every database operation is atomic;
a lease never expires while its holder is alive (only a crashed holder's lease is taken over);
an inode's name stands for its sha256, so distinct uploads have distinct inodes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from itertools import count
from typing import Any

import pytest

pytestmark: list[pytest.MarkDecorator] = []

KEY = "K"
DELETER = "D"
WRITERS = ("W1", "W2")
STAGING = {"W1": "S1", "W2": "S2"}
BYTES = {"W1": "b1", "W2": "b2"}  # each upload's inode; an inode's name is its sha256
OLD_BYTES = "v0"
OLD_AUTHOR = "earlier upload"
SHA_OF_AUTHOR = {**BYTES, OLD_AUTHOR: OLD_BYTES}
FINAL_RECOVERY = "final recovery"

Document = tuple[str, str]  # (sha256, author)
Lease = tuple[str, str | None, str | None]  # (holder, staging name, sha256)
Operation = tuple[str, ...]  # ("write", author) or ("delete",)


@dataclass(frozen=True)
class World:
    """What every actor shares: the file names, the document at K, the lease of K."""

    names: frozenset[tuple[str, str]]  # (file name, inode)
    document: Document | None = None
    lease: Lease | None = None
    dead: frozenset[str] = frozenset()
    last_operation: Operation | None = None

    def inode(self, name: str | None) -> str | None:
        return next((inode for held, inode in self.names if held == name), None)


@dataclass(frozen=True)
class Frame:
    """A running sub-program (RECOVER or REMOVE-UNREFERENCED) and its variables."""

    routine: str
    pc: str
    staging: str | None = None
    sha: str | None = None
    carried: bool = False
    had_document: bool = False
    tomb: str | None = None
    seen: str | None = None  # the sha256 of the document REMOVE-UNREFERENCED saw


@dataclass(frozen=True)
class Actor:
    """An actor's local state: its program counter and the sub-programs it runs, top last."""

    name: str
    pc: str
    frames: tuple[Frame, ...] = ()


@dataclass(frozen=True)
class Protocol:
    """The protocol under check; each flag off (or on, for the first) breaks it on purpose."""

    asks_before_moving_aside: bool = False
    writer_verifies: bool = True
    deleter_releases: bool = True
    restore_replaces_other_bytes: bool = True
    integrity_drops_crashed_link: bool = True
    integrity_restores_staged_bytes: bool = True


SOUND = Protocol()
Step = tuple[World, Actor]
State = tuple[World, tuple[Actor, ...]]
StepFunction = Callable[[World, Actor, Protocol], list[Step]]


# --- the filesystem: atomic calls with POSIX semantics ------------------------------------------
def with_name(world: World, name: str, inode: str | None) -> World:
    kept = frozenset(pair for pair in world.names if pair[0] != name)
    return replace(world, names=kept if inode is None else kept | {(name, inode)})


def link(world: World, source: str, target: str) -> tuple[World, bool]:
    """Fails (False) when `target` exists."""
    inode = world.inode(source)
    assert inode is not None, f"link of missing {source}"
    if world.inode(target) is not None:
        return world, False
    return with_name(world, target, inode), True


def rename(world: World, source: str, target: str) -> World:
    """Replaces `target`; when both name the same inode nothing happens and `source` stays."""
    inode = world.inode(source)
    assert inode is not None, f"rename of missing {source}"
    if inode == world.inode(target):
        return world
    return with_name(with_name(world, source, None), target, inode)


def unlink(world: World, name: str) -> World:
    return with_name(world, name, None)


def same_file(world: World, first: str, second: str) -> bool:
    inode = world.inode(first)
    return inode is not None and inode == world.inode(second)


def fresh_tomb(world: World) -> str:
    return next(name for name in (f"T{i}" for i in count(1)) if world.inode(name) is None)


# --- local state helpers -------------------------------------------------------------------------
def goto(actor: Actor, pc: str) -> Actor:
    return replace(actor, pc=pc)


def push(actor: Actor, frame: Frame) -> Actor:
    return replace(actor, frames=(*actor.frames, frame))


def pop(actor: Actor) -> Actor:
    return replace(actor, frames=actor.frames[:-1])


def frame_goto(actor: Actor, pc: str, **variables: Any) -> Actor:
    top = replace(actor.frames[-1], pc=pc, **variables)
    return replace(actor, frames=(*actor.frames[:-1], top))


def recover_frame(staging: str | None, sha: str | None) -> Frame:
    return Frame("recover", "read", staging=staging, sha=sha)


def remove_frame(protocol: Protocol) -> Frame:
    return Frame("remove", "ask_first" if protocol.asks_before_moving_aside else "move_aside")


def staging_of(actor: Actor) -> str:
    return STAGING[actor.name]


def write_document(world: World, author: str) -> World:
    return replace(world, document=(BYTES[author], author), last_operation=("write", author))


# --- the lease -----------------------------------------------------------------------------------
def take_lease(world: World, then: Actor, staging: str | None, sha: str | None) -> list[Step]:
    """Free: taken. Held by a crashed actor: taken over, its write recovered first. Held by a
    live actor: wait (no step)."""
    held = world.lease
    if held is not None and held[0] not in world.dead:
        return []
    taken = replace(world, lease=(then.name, staging, sha))
    if held is not None:
        then = push(then, recover_frame(held[1], held[2]))
    return [(taken, then)]


def release(world: World, actor: Actor, protocol: Protocol) -> list[Step]:
    mine = world.lease is not None and world.lease[0] == actor.name
    released = replace(world, lease=None) if mine else world
    return [(released, goto(actor, "done"))]


# --- RECOVER (images/writes/recovery.py) ---------------------------------------------------------
def recover_read(world: World, actor: Actor, protocol: Protocol) -> list[Step]:
    frame = actor.frames[-1]
    document = world.document
    carried = document is not None and document[0] == frame.sha
    moved = frame_goto(actor, "settle", carried=carried, had_document=document is not None)
    if frame.staging is None:
        moved = after_staging(moved, protocol)
    return [(world, moved)]


def recover_settle(world: World, actor: Actor, protocol: Protocol) -> list[Step]:
    """Roll the staged bytes forward when the document carries their sha, else drop them (and
    the key too when it is the same file: bytes of a write whose document never landed)."""
    frame = actor.frames[-1]
    staging = frame.staging
    assert staging is not None
    if world.inode(staging) is None:
        return [(world, after_staging(actor, protocol))]
    if frame.carried:
        world = rename(world, staging, KEY)
    elif same_file(world, staging, KEY):
        world = unlink(world, KEY)
    if world.inode(staging) is None:
        return [(world, after_staging(actor, protocol))]
    return [(world, frame_goto(actor, "drop_staging"))]


def recover_drop_staging(world: World, actor: Actor, protocol: Protocol) -> list[Step]:
    staging = actor.frames[-1].staging
    assert staging is not None
    return [(unlink(world, staging), after_staging(actor, protocol))]


def after_staging(actor: Actor, protocol: Protocol) -> Actor:
    """r3: no document at r1: the key's file, if any, is unreferenced (a tail call)."""
    if actor.frames[-1].had_document:
        return pop(actor)
    return push(pop(actor), remove_frame(protocol))


# --- REMOVE-UNREFERENCED (images/store/files/local.py) -------------------------------------------
def remove_move_aside(world: World, actor: Actor, protocol: Protocol) -> list[Step]:
    if world.inode(KEY) is None:
        return [(world, pop(actor))]
    tomb = fresh_tomb(world)
    return [(rename(world, KEY, tomb), frame_goto(actor, "ask", tomb=tomb))]


def remove_ask(world: World, actor: Actor, protocol: Protocol) -> list[Step]:
    if world.document is None:
        return [(world, frame_goto(actor, "drop_tomb"))]
    return [(world, frame_goto(actor, "restore", seen=world.document[0]))]


def remove_restore(world: World, actor: Actor, protocol: Protocol) -> list[Step]:
    """Link the moved file back. When K holds other bytes again (a writer linked them while
    K was free; its insert must fail, the key has a document), the moved file replaces them
    if it holds the document's bytes (compared by sha256 in the code)."""
    frame = actor.frames[-1]
    assert frame.tomb is not None
    restored, linked = link(world, frame.tomb, KEY)
    ours = world.inode(frame.tomb) == frame.seen != world.inode(KEY)
    if not linked and ours and protocol.restore_replaces_other_bytes:
        return [(rename(world, frame.tomb, KEY), pop(actor))]
    return [(restored, frame_goto(actor, "drop_tomb"))]


def remove_drop_tomb(world: World, actor: Actor, protocol: Protocol) -> list[Step]:
    tomb = actor.frames[-1].tomb
    assert tomb is not None
    return [(unlink(world, tomb), pop(actor))]


def remove_ask_first(world: World, actor: Actor, protocol: Protocol) -> list[Step]:
    """Broken on purpose: asks before moving the file aside, then unlinks the key itself."""
    if world.document is not None:
        return [(world, pop(actor))]
    return [(world, frame_goto(actor, "unlink_key"))]


def remove_unlink_key(world: World, actor: Actor, protocol: Protocol) -> list[Step]:
    return [(unlink(world, KEY), pop(actor))]


# --- the writer (images/writes/commit.py) --------------------------------------------------------
def fast_link(world: World, actor: Actor, protocol: Protocol) -> list[Step]:
    linked_world, linked = link(world, staging_of(actor), KEY)
    return [(linked_world, goto(actor, "insert" if linked else "lease"))]


def fast_insert(world: World, actor: Actor, protocol: Protocol) -> list[Step]:
    if world.document is not None:  # path taken
        return [(world, goto(actor, "lease"))]
    after_insert = "verify" if protocol.writer_verifies else "drop_staged"
    return [(write_document(world, actor.name), goto(actor, after_insert))]


def fast_verify(world: World, actor: Actor, protocol: Protocol) -> list[Step]:
    intact = same_file(world, staging_of(actor), KEY)
    return [(world, goto(actor, "drop_staged" if intact else "repair"))]


def fast_drop_staged(world: World, actor: Actor, protocol: Protocol) -> list[Step]:
    return [(unlink(world, staging_of(actor)), goto(actor, "done"))]


def repair(world: World, actor: Actor, protocol: Protocol) -> list[Step]:
    staging, sha = staging_of(actor), BYTES[actor.name]
    then = push(goto(actor, "release"), recover_frame(staging, sha))
    return take_lease(world, then, staging, sha)


def leased_take(world: World, actor: Actor, protocol: Protocol) -> list[Step]:
    return take_lease(world, goto(actor, "leased_link"), staging_of(actor), BYTES[actor.name])


def leased_link(world: World, actor: Actor, protocol: Protocol) -> list[Step]:
    linked_world, linked = link(world, staging_of(actor), KEY)
    return [(linked_world, goto(actor, "write_new" if linked else "write_replacing"))]


def write_new(world: World, actor: Actor, protocol: Protocol) -> list[Step]:
    return [(write_document(world, actor.name), goto(actor, "drop_linked"))]


def drop_linked(world: World, actor: Actor, protocol: Protocol) -> list[Step]:
    return [(unlink(world, staging_of(actor)), goto(actor, "release"))]


def write_replacing(world: World, actor: Actor, protocol: Protocol) -> list[Step]:
    return [(write_document(world, actor.name), goto(actor, "promote"))]


def promote(world: World, actor: Actor, protocol: Protocol) -> list[Step]:
    promoted = rename(world, staging_of(actor), KEY)
    left = promoted.inode(staging_of(actor)) is not None  # K was this very file already
    return [(promoted, goto(actor, "drop_linked" if left else "release"))]


# --- the deleter (images/writes/deletes.py) ------------------------------------------------------
def delete_take(world: World, actor: Actor, protocol: Protocol) -> list[Step]:
    return take_lease(world, goto(actor, "delete"), None, None)


def delete_document(world: World, actor: Actor, protocol: Protocol) -> list[Step]:
    deleted = replace(world, document=None, last_operation=("delete",))
    after = "release" if protocol.deleter_releases else "done"
    return [(deleted, push(goto(actor, after), remove_frame(protocol)))]


def finished(world: World, actor: Actor, protocol: Protocol) -> list[Step]:
    return []


WRITER: dict[str, StepFunction] = {
    "link": fast_link,
    "insert": fast_insert,
    "verify": fast_verify,
    "drop_staged": fast_drop_staged,
    "repair": repair,
    "lease": leased_take,
    "leased_link": leased_link,
    "write_new": write_new,
    "drop_linked": drop_linked,
    "write_replacing": write_replacing,
    "promote": promote,
    "release": release,
    "done": finished,
}
DELETE: dict[str, StepFunction] = {
    "lease": delete_take,
    "delete": delete_document,
    "release": release,
    "done": finished,
}
SUBPROGRAMS: dict[str, dict[str, StepFunction]] = {
    "recover": {
        "read": recover_read,
        "settle": recover_settle,
        "drop_staging": recover_drop_staging,
    },
    "remove": {
        "move_aside": remove_move_aside,
        "ask": remove_ask,
        "restore": remove_restore,
        "drop_tomb": remove_drop_tomb,
        "ask_first": remove_ask_first,
        "unlink_key": remove_unlink_key,
    },
}


def successors(world: World, actor: Actor, protocol: Protocol = SOUND) -> list[Step]:
    """The steps `actor` can take from `world`: none when it is crashed, done or waiting."""
    if actor.name in world.dead:
        return []
    if actor.frames:
        frame = actor.frames[-1]
        return SUBPROGRAMS[frame.routine][frame.pc](world, actor, protocol)
    program = DELETE if actor.name == DELETER else WRITER
    return program[actor.pc](world, actor, protocol)


def step_name(actor: Actor) -> str:
    if actor.frames:
        return f"{actor.frames[-1].routine}.{actor.frames[-1].pc}"
    return actor.pc


# --- the end of a run: final recovery, integrity pass, invariants ---------------------------------
def final_recovery(world: World, protocol: Protocol) -> World:
    """A crashed holder's lease: its write recovered (nothing runs concurrently now)."""
    if world.lease is None or world.lease[0] not in world.dead:
        return world
    _, staging, sha = world.lease
    runner = Actor(FINAL_RECOVERY, "done", (recover_frame(staging, sha),))
    while runner.frames:
        [(world, runner)] = successors(world, runner, protocol)
    return replace(world, lease=None)


def integrity_pass(world: World, protocol: Protocol) -> World:
    """`check_integrity --fix`: staged and set-aside names no lease records, and a file at K
    no document references, are removed."""
    if protocol.integrity_restores_staged_bytes:
        world = restore_staged_bytes(world)
    if protocol.integrity_drops_crashed_link and crashed_link(world):
        # The rule check_integrity needs: K is the same file as a leftover staging name (a
        # writer crashed between its fast-path link and its insert) while the document at K
        # describes other bytes; K then holds bytes no document describes: removed.
        world = unlink(world, KEY)
    recorded = world.lease[1] if world.lease else None
    for name, _ in world.names:
        if name not in (KEY, recorded):
            world = unlink(world, name)
    if world.document is None and world.inode(KEY) is not None:
        world = unlink(world, KEY)
    return world


def restore_staged_bytes(world: World) -> World:
    """images/writes/repair.py: a document whose file is missing or mismatched gets the right
    bytes back when a leftover staged (or set-aside) name still holds them."""
    document = world.document
    if document is None or world.inode(KEY) == document[0]:
        return world
    holders = sorted(name for name, inode in world.names if inode == document[0])
    return rename(world, holders[0], KEY) if holders else world


def crashed_link(world: World) -> bool:
    document = world.document
    return document is not None and any(
        same_file(world, staging, KEY) and world.inode(staging) != document[0]
        for staging in STAGING.values()
    )


def expected_document(operation: Operation | None) -> Document | None:
    if operation is None or operation[0] == "delete":
        return None
    author = operation[1]
    return SHA_OF_AUTHOR[author], author


def file_agrees(world: World, file_may_be_missing: bool) -> bool:
    """Invariant 1: a document's key holds its bytes (or, when allowed, nothing)."""
    document, held = world.document, world.inode(KEY)
    if document is None or held == document[0]:
        return True
    return file_may_be_missing and held is None


def invariant_problems(world: World, file_may_be_missing: bool) -> list[str]:
    held = world.inode(KEY)
    document = world.document
    problems = []
    if document is not None and not file_agrees(world, file_may_be_missing):
        problems.append(f"the document describes {document[0]} but K holds {held}")
    if document is None and held is not None:
        problems.append(f"K holds {held} and no document references it")
    leftovers = sorted(name for name, _ in world.names if name != KEY)
    if leftovers:
        problems.append(f"left behind: {', '.join(leftovers)}")
    if document != expected_document(world.last_operation):
        problems.append(f"the document is {document}, the last operation {world.last_operation}")
    if world.lease is not None:
        problems.append(f"the lease is still held: {world.lease}")
    return problems


def outcome_problems(world: World, protocol: Protocol, file_may_be_missing: bool) -> list[str]:
    """Crash-free runs: the protocol itself must leave the store in order. Runs with a crash:
    after the final recovery and the integrity pass."""
    recovered = final_recovery(world, protocol)
    if not world.dead:
        return invariant_problems(recovered, file_may_be_missing=False)
    return invariant_problems(integrity_pass(recovered, protocol), file_may_be_missing)


# --- the explorer --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Violation:
    problems: tuple[str, ...]
    interleaving: tuple[str, ...]

    def __str__(self) -> str:
        steps = "\n".join(f"  {number}. {step}" for number, step in enumerate(self.interleaving, 1))
        return "; ".join(self.problems) + "\n" + steps


@dataclass(frozen=True)
class Exploration:
    states: int
    end_states: int
    violation: Violation | None


Parents = dict[State, tuple[State, str] | None]


def initial_actors(writers: tuple[str, ...], with_deleter: bool) -> tuple[Actor, ...]:
    uploaders = tuple(Actor(name, "link") for name in writers)
    return (*uploaders, Actor(DELETER, "lease")) if with_deleter else uploaders


def initial_world(old_document: bool, old_file: bool) -> World:
    names = {(STAGING[writer], BYTES[writer]) for writer in WRITERS}
    if old_file:
        names.add((KEY, OLD_BYTES))
    if not old_document:
        return World(frozenset(names))
    written: Operation = ("write", OLD_AUTHOR)
    return World(frozenset(names), (OLD_BYTES, OLD_AUTHOR), last_operation=written)


def program_moves(state: State, protocol: Protocol) -> Iterator[tuple[str, State]]:
    world, actors = state
    for index, actor in enumerate(actors):
        for moved_world, moved in successors(world, actor, protocol):
            label = f"{actor.name} {step_name(actor)}"
            yield label, (moved_world, (*actors[:index], moved, *actors[index + 1 :]))


def crash_moves(state: State) -> Iterator[tuple[str, State]]:
    world, actors = state
    if world.dead:
        return
    for actor in actors:
        if actor.pc != "done":
            yield f"{actor.name} crashes", (replace(world, dead=frozenset({actor.name})), actors)


def all_finished(state: State) -> bool:
    world, actors = state
    return all(actor.pc == "done" or actor.name in world.dead for actor in actors)


def interleaving(parents: Parents, state: State) -> tuple[str, ...]:
    labels = []
    entry = parents[state]
    while entry is not None:
        state, label = entry
        labels.append(label)
        entry = parents[state]
    return tuple(reversed(labels))


def stuck_problems(state: State, protocol: Protocol, file_may_be_missing: bool) -> list[str]:
    """A state in which no program step is enabled: either the end of a run, or a deadlock."""
    if not all_finished(state):
        world, actors = state
        waiting = [
            actor.name for actor in actors if actor.pc != "done" and actor.name not in world.dead
        ]
        return [f"deadlock: {', '.join(waiting)} wait on the lease {world.lease}"]
    return outcome_problems(state[0], protocol, file_may_be_missing)


def explore(
    world: World,
    protocol: Protocol = SOUND,
    crashes: bool = False,
    file_may_be_missing: bool = False,
    with_deleter: bool = True,
    writers: tuple[str, ...] = WRITERS,
) -> Exploration:
    """Breadth-first over every reachable state; stops at the first violation."""
    start: State = (world, initial_actors(writers, with_deleter))
    parents: Parents = {start: None}
    queue = deque([start])
    end_states = 0
    while queue:
        state = queue.popleft()
        moves = list(program_moves(state, protocol))
        if not moves:
            end_states += 1
            problems = stuck_problems(state, protocol, file_may_be_missing)
            if problems:
                found = Violation(tuple(problems), interleaving(parents, state))
                return Exploration(len(parents), end_states, found)
        if crashes:
            moves += crash_moves(state)
        for label, following in moves:
            if following not in parents:
                parents[following] = (state, label)
                queue.append(following)
    return Exploration(len(parents), end_states, None)


# --- the tests -----------------------------------------------------------------------------------
WORLDS = {
    "empty": initial_world(old_document=False, old_file=False),
    "stored": initial_world(old_document=True, old_file=True),
    "file missing": initial_world(old_document=True, old_file=False),
}
STATE_FLOOR = 200  # every world's crash-free exploration reaches more (280 to about 1000)
WRITERS_ALONE_FLOOR = 100  # two writers, no deleter, one crash: 146 states and more
CRASH_STATE_FLOOR = 1_500  # and with one crash (about 2000 to 5000)
LOST_UPLOAD_STEPS = (
    "W1 link",
    "D lease",
    "D delete",
    "W1 insert",
    "W1 verify",
    "W1 drop_staged",  # W1's upload is acknowledged: its bytes are at K only
    "D remove.move_aside",  # K -> T1
    "W2 link",  # the fast path takes no lease: K is free, so W2's bytes land there
    "D remove.ask",  # W1's document: K must be restored
    "D remove.restore",  # link(T1, K) fails: K exists
    "D remove.drop_tomb",  # the only name of W1's bytes
    "D release",
    "W2 crashes",  # before its insert: K keeps W2's bytes, W1's are gone
)


def test_filesystem_calls_follow_posix() -> None:
    world = World(frozenset({("S1", "b1"), (KEY, "b1")}))
    assert rename(world, "S1", KEY) == world  # the same inode: nothing happens, S1 stays
    assert link(world, "S1", KEY) == (world, False)
    assert rename(with_name(world, KEY, "b2"), "S1", KEY).names == frozenset({(KEY, "b1")})


@pytest.mark.parametrize("world_name", WORLDS)
def test_every_interleaving_keeps_document_and_file_in_step(world_name: str) -> None:
    exploration = explore(WORLDS[world_name])
    assert exploration.violation is None, str(exploration.violation)
    assert exploration.states > STATE_FLOOR


@pytest.mark.parametrize(
    "world_name",
    [
        "empty",
        "stored",
    ],
)
def test_any_single_crash_is_recovered(world_name: str) -> None:
    exploration = explore(WORLDS[world_name], crashes=True)
    assert exploration.violation is None, str(exploration.violation)
    assert exploration.states > CRASH_STATE_FLOOR


@pytest.mark.parametrize("world_name", WORLDS)
def test_any_single_crash_leaves_the_documents_bytes_or_nothing(world_name: str) -> None:
    exploration = explore(WORLDS[world_name], crashes=True, file_may_be_missing=True)
    assert exploration.violation is None, str(exploration.violation)
    assert exploration.states > CRASH_STATE_FLOOR


@pytest.mark.parametrize("world_name", WORLDS)
def test_two_writers_alone_with_any_single_crash(world_name: str) -> None:
    """Without a deleter to clean up after them: the integrity pass alone must."""
    may_be_missing = world_name == "file missing"
    exploration = explore(
        WORLDS[world_name], crashes=True, file_may_be_missing=may_be_missing, with_deleter=False
    )
    assert exploration.violation is None, str(exploration.violation)
    assert exploration.states > WRITERS_ALONE_FLOOR


def test_finds_an_acknowledged_upload_that_loses_its_bytes() -> None:
    """A deleter whose put-back gives way to any bytes found at K loses the document's."""
    without = Protocol(restore_replaces_other_bytes=False)
    violation = explore(WORLDS["empty"], without, crashes=True).violation
    assert violation is not None
    assert violation.problems == ("the document describes b1 but K holds None",)
    assert violation.interleaving == LOST_UPLOAD_STEPS


def test_integrity_pass_needs_the_crashed_link_rule() -> None:
    """A writer that linked over a lost file and stopped before its leased write leaves bytes
    no document describes: the integrity pass must take them back."""
    without = Protocol(integrity_drops_crashed_link=False)
    world = WORLDS["file missing"]
    alone = {"crashes": True, "file_may_be_missing": True, "with_deleter": False}
    violation = explore(world, without, writers=("W1",), **alone).violation
    assert violation is not None
    assert "the document describes v0 but K holds b" in violation.problems[0]


def test_integrity_pass_needs_to_restore_staged_bytes() -> None:
    without = Protocol(integrity_restores_staged_bytes=False)
    violation = explore(WORLDS["empty"], without, crashes=True, file_may_be_missing=True).violation
    assert violation is not None
    assert "K holds b2" in violation.problems[0]


def test_finds_deleter_that_asks_before_moving_aside() -> None:
    broken = Protocol(asks_before_moving_aside=True)
    violation = explore(WORLDS["empty"], broken).violation
    assert violation is not None
    assert "K holds None" in violation.problems[0]


def test_finds_writer_that_skips_verify() -> None:
    violation = explore(WORLDS["empty"], Protocol(writer_verifies=False)).violation
    assert violation is not None
    assert "K holds None" in violation.problems[0]


def test_finds_deadlock_of_deleter_that_keeps_the_lease() -> None:
    violation = explore(WORLDS["stored"], Protocol(deleter_releases=False)).violation
    assert violation is not None
    assert violation.problems[0].startswith("deadlock: W1, W2 wait")
