"""Regular expressions that reach the database, refused when they can backtrack without bound.

A backtracking matcher (PCRE in MongoDB, Python's `re` in the embedded server, which holds the
GIL and cannot be interrupted) takes exponential time on patterns such as `^(a+)+$`. The
pattern is parsed with Python's own parser (its tree, not a match against text) and refused
when a repeat that can run many times holds another variable repeat (nested quantifiers), or
alternatives that can begin with the same character (so each character may be taken by either),
and always for backreferences and lookaround, which the cost model cannot bound.
"""

from __future__ import annotations

import functools
import re
import re._constants as sre
import re._parser as sre_parse
from typing import Any

from images.core.errors import InvalidInput

MAX_PATTERN_LENGTH = 512
# MongoDB's PCRE refuses groups nested 250 deep (error 51091); this leaves a margin.
MAX_GROUP_DEPTH = 200
# A repeat at most this many times is cheap whatever it holds (at most 2**10 ways to split).
SMALL_REPEAT = 10

# Character sets over ASCII; OTHER stands for every character above it.
OTHER = 128
ANYTHING = frozenset(range(OTHER + 1))
_ASCII = [chr(c) for c in range(OTHER)]
_CATEGORIES = {
    sre.CATEGORY_DIGIT: (r"\d", False),
    sre.CATEGORY_NOT_DIGIT: (r"\D", True),
    sre.CATEGORY_SPACE: (r"\s", False),
    sre.CATEGORY_NOT_SPACE: (r"\S", True),
    sre.CATEGORY_WORD: (r"\w", True),
    sre.CATEGORY_NOT_WORD: (r"\W", True),
    sre.CATEGORY_LINEBREAK: (r"\n", False),
    sre.CATEGORY_NOT_LINEBREAK: (r"[^\n]", True),
}
_REPEATS = {sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT}
_REFUSED = {
    sre.GROUPREF: "a backreference",
    sre.GROUPREF_EXISTS: "a conditional on a group (backreference)",
    sre.ASSERT: "a lookahead or lookbehind",
    sre.ASSERT_NOT: "a negative lookahead or lookbehind",
}


@functools.lru_cache(maxsize=1024)
def check_pattern(pattern: str, options: str = "", where: str = "$regex") -> None:
    """400 naming the construct when `pattern` could make the database backtrack for ever.

    Accepted patterns are remembered (a refusal raises, and is not)."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise InvalidInput(f"{where} takes a string of at most {MAX_PATTERN_LENGTH} characters")
    depth = group_depth(pattern)
    if depth > MAX_GROUP_DEPTH:
        raise InvalidInput(
            f"{where} nests groups {depth} deep; the database takes at most {MAX_GROUP_DEPTH}"
        )
    flags = (re.VERBOSE if "x" in options else 0) | (re.IGNORECASE if "i" in options else 0)
    try:
        tree = sre_parse.parse(pattern, flags)
    except (re.error, OverflowError, RecursionError) as error:
        raise InvalidInput(f"{where} is not a valid regular expression: {error}") from None
    checker = _Checker(where, bool((flags | tree.state.flags) & re.IGNORECASE))
    try:
        checker.sequence(list(tree), 0)
    except RecursionError:
        raise InvalidInput(f"{where} nests groups too deeply to be checked") from None


def group_depth(pattern: str) -> int:
    """How deep the pattern's parentheses nest, as the database's parser counts them (escaped
    characters and character classes hold no groups). Python's parser drops `(?:...)`."""
    depth = deepest = 0
    index, in_class = 0, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 1
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if pattern[index + 1 : index + 2] == "^":
                index += 1
            if pattern[index + 1 : index + 2] == "]":  # a leading ] is a member
                index += 1
        elif char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth = max(depth - 1, 0)
        index += 1
    return deepest


class _Checker:
    def __init__(self, where: str, ignore_case: bool) -> None:
        self.where = where
        self.ignore_case = ignore_case

    def refuse(self, construct: str) -> None:
        raise InvalidInput(
            f"{self.where} is refused: it contains {construct}, which can make the database "
            "backtrack exponentially; rewrite the pattern without it"
        )

    def sequence(self, items: list, loops: int) -> None:
        """Walk `items`; `loops` counts the enclosing repeats that can run many times."""
        for op, argument in items:
            if op in _REFUSED:
                self.refuse(_REFUSED[op])
            if op in _REPEATS:
                _, high, body = argument
                if loops and high == sre.MAXREPEAT:
                    self.refuse("nested quantifiers (an unbounded repeat inside a repeat)")
                many = high == sre.MAXREPEAT or high > SMALL_REPEAT
                self.sequence(list(body), loops + many)
                if many:
                    self.ambiguities(list(body), self.first(list(body))[0])
            elif op == sre.BRANCH:
                for alternative in argument[1]:
                    self.sequence(list(alternative), loops)
            elif op == sre.SUBPATTERN:
                self.sequence(list(argument[-1]), loops)
            elif op == sre.ATOMIC_GROUP:
                self.sequence(list(argument), loops)

    def ambiguities(self, items: list, after: set[int]) -> None:
        """In the body of a repeat, a choice whose ways can start with the same character makes
        one text match in exponentially many ways: alternatives, and optional or bounded
        repeats (another round, or what follows). An empty way starts like what follows it;
        `after` is what can follow `items` (the next round of the repeat included)."""
        for position, (op, argument) in enumerate(items):
            following, open_end = self.first(items[position + 1 :])
            if open_end:
                following = following | after
            if op == sre.BRANCH:
                ways = [self.first(list(alternative)) for alternative in argument[1]]
                self.overlap([first | following if empty else first for first, empty in ways])
                for alternative in argument[1]:
                    self.ambiguities(list(alternative), following)
            elif op in _REPEATS and argument[0] != argument[1]:
                first, empty = self.first(list(argument[2]))
                self.overlap([first | following if empty else first, following])
            elif op == sre.SUBPATTERN:
                self.ambiguities(list(argument[-1]), following)

    def overlap(self, starts: list[set[int]]) -> None:
        for index, start in enumerate(starts):
            if any(start & other for other in starts[index + 1 :]):
                self.refuse("a repeated group whose alternatives overlap")

    def first(self, items: list) -> tuple[set[int], bool]:
        """The characters a match of `items` can start with, and whether it can be empty."""
        found: set[int] = set()
        for op, argument in items:
            chars, nullable = self.first_of(op, argument)
            found |= chars
            if not nullable:
                return found, False
        return found, True

    def first_of(self, op: Any, argument: Any) -> tuple[set[int], bool]:
        if op == sre.LITERAL:
            return self.fold({argument if argument < OTHER else OTHER}), False
        if op in (sre.NOT_LITERAL, sre.ANY):
            return set(ANYTHING), False
        if op == sre.IN:
            return self.fold(_charset(argument)), False
        if op == sre.AT:
            return set(), True
        if op == sre.SUBPATTERN:
            return self.first(list(argument[-1]))
        if op == sre.ATOMIC_GROUP:
            return self.first(list(argument))
        if op == sre.BRANCH:
            found, nullable = set(), False
            for alternative in argument[1]:
                chars, empty = self.first(list(alternative))
                found |= chars
                nullable = nullable or empty
            return found, nullable
        if op in _REPEATS:
            chars, nullable = self.first(list(argument[2]))
            return chars, nullable or argument[0] == 0
        return set(ANYTHING), True

    def fold(self, chars: set[int]) -> set[int]:
        if not self.ignore_case:
            return chars
        letters = {ord(c.swapcase()) for c in map(chr, chars & set(range(OTHER))) if c.isalpha()}
        return chars | letters


def _charset(items: list) -> set[int]:
    found: set[int] = set()
    negate = False
    for op, argument in items:
        if op == sre.NEGATE:
            negate = True
        elif op == sre.LITERAL:
            found.add(argument if argument < OTHER else OTHER)
        elif op == sre.RANGE:
            low, high = argument
            found |= set(range(min(low, OTHER), min(high, OTHER - 1) + 1))
            if high >= OTHER:
                found.add(OTHER)
        elif op == sre.CATEGORY and argument in _CATEGORY_SETS:
            found |= _CATEGORY_SETS[argument]
        else:
            found |= ANYTHING
    return set(ANYTHING - found) | {OTHER} if negate else found


def _category(expression: str, beyond_ascii: bool) -> frozenset[int]:
    matcher = re.compile(expression)
    chars = {ord(c) for c in _ASCII if matcher.fullmatch(c)}
    return frozenset(chars | {OTHER} if beyond_ascii else chars)


_CATEGORY_SETS = {name: _category(*spec) for name, spec in _CATEGORIES.items()}
