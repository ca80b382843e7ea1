"""OpenKAT's filter bodies, read leniently and turned into plain conditions.

OpenKAT sends `{"filters": [{"column": "data", "field": "boefje__id", "operator": "in", "value": [...]}]}`,
or `{"filters": {"and": [...], "or": [...], "not": [...]}}`. A field path may be written with `__`, `.`,
`->` or `->>` between its parts, and the column may be left out when the field names it
("data.boefje.id"). The operators are those of OpenKAT's scheduler, but for its Postgres full-text
ones. Pops use the conditions on the plugin (see `plugin_constraints`); task listings and schedule
searches evaluate them on the task or schedule as the API shows it (`FilterSet.matches`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kat_scheduler.kinds import KINDS
from kat_scheduler.server.errors import ApiError

MAX_CONDITIONS = 50  # in one filter body
MAX_VALUES = 1000  # values in all conditions of one filter body together
MAX_PATTERN_LENGTH = 1000  # of a like pattern
MAX_VALUE_DEPTH = 32  # of an object given as JSON text for @> and <@
Scalar = str | int | float | bool | None


class Operator(StrEnum):
    EQ = "eq"
    NE = "ne"
    IN = "in"
    NOT_IN = "not_in"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    LIKE = "like"
    ILIKE = "ilike"
    NOT_LIKE = "not_like"
    NOT_ILIKE = "not_ilike"
    IS_NULL = "is_null"
    IS_NOT_NULL = "is_not_null"
    CONTAINS = "contains"  # a substring of a string, an element of a list, a sub-object of an object
    STARTS_WITH = "starts_with"
    CONTAINS_ALL = "@>"  # JSON containment: the field holds all of the value
    CONTAINED_BY = "<@"  # the value holds all of the field


OPERATOR_SPELLINGS: dict[str, Operator] = {
    "==": Operator.EQ, "=": Operator.EQ, "eq": Operator.EQ, "is": Operator.EQ,
    "!=": Operator.NE, "ne": Operator.NE, "is_not": Operator.NE, "isnot": Operator.NE,
    "in": Operator.IN, "not_in": Operator.NOT_IN, "notin": Operator.NOT_IN,
    ">": Operator.GT, "gt": Operator.GT, ">=": Operator.GTE, "gte": Operator.GTE,
    "<": Operator.LT, "lt": Operator.LT, "<=": Operator.LTE, "lte": Operator.LTE,
    "like": Operator.LIKE, "ilike": Operator.ILIKE, "not_like": Operator.NOT_LIKE,
    "not_ilike": Operator.NOT_ILIKE, "is_null": Operator.IS_NULL, "is_not_null": Operator.IS_NOT_NULL,
    "contains": Operator.CONTAINS, "starts_with": Operator.STARTS_WITH, "@>": Operator.CONTAINS_ALL,
    "<@": Operator.CONTAINED_BY,
}
_PATH_SEPARATORS = re.compile(r"__|->>|->|\.")
LIKES = frozenset({Operator.LIKE, Operator.ILIKE, Operator.NOT_LIKE, Operator.NOT_ILIKE})


class FilterItem(BaseModel):
    """One condition as OpenKAT writes it."""

    model_config = ConfigDict(extra="ignore")

    column: str = Field(max_length=200)
    field: str | None = Field(None, max_length=500)
    operator: str = Field("eq", max_length=20)
    value: Scalar | list[Scalar] = Field(None, description="a value, or a list of values (OpenKAT writes objects "
                                               "for @> and <@ as JSON text)")


class FilterRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    filters: list[FilterItem] | dict[str, list[FilterItem]] | None = None


@dataclass(frozen=True, slots=True)
class Condition:
    path: tuple[str, ...]
    operator: Operator
    value: Any

    def matches(self, subject: Mapping[str, Any]) -> bool:
        return _compare(_lookup(subject, self.path), self.operator, self.value)

    def string_values(self) -> frozenset[str] | None:
        """The strings an `eq` or `in` condition allows, or None for any other condition."""
        values = [self.value] if self.operator is Operator.EQ else self.value if self.operator is Operator.IN else None
        if values is None or not all(isinstance(value, str) for value in values):
            return None
        return frozenset(values)


@dataclass
class FilterSet:
    """all_of and (any_of empty or one of any_of) and none of none_of."""

    all_of: list[Condition] = field(default_factory=list)
    any_of: list[Condition] = field(default_factory=list)
    none_of: list[Condition] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.all_of or self.any_of or self.none_of)

    @property
    def conditions(self) -> list[Condition]:
        return [*self.all_of, *self.any_of, *self.none_of]

    def matches(self, subject: Mapping[str, Any]) -> bool:
        return (all(c.matches(subject) for c in self.all_of)
                and (not self.any_of or any(c.matches(subject) for c in self.any_of))
                and not any(c.matches(subject) for c in self.none_of))

    def split_off(self, column: str) -> tuple[frozenset[str] | None, FilterSet]:
        """The values that `and` conditions of equality or membership on `column` allow (None: no such
        condition), and the conditions that are left. Lets a listing read an organisation's own index
        instead of checking every record."""
        allowed: frozenset[str] | None = None
        rest: list[Condition] = []
        for condition in self.all_of:
            values = condition.string_values() if condition.path == (column,) else None
            if values is None:
                rest.append(condition)
            else:
                allowed = values if allowed is None else allowed & values
        return allowed, FilterSet(rest, self.any_of, self.none_of)


def parse(request: FilterRequest | None) -> FilterSet:
    """The plain conditions of a filter body; 400 naming the first condition that cannot be read."""
    if request is None or request.filters is None:
        return FilterSet()
    _check_size(request.filters)
    if isinstance(request.filters, list):
        return FilterSet(all_of=[_condition(item) for item in request.filters])
    unknown = set(request.filters) - {"and", "or", "not"}
    if unknown:
        raise ApiError(400, f"filters: unknown combination(s) {sorted(unknown)}; use and, or, not", field="filters")
    return FilterSet(
        all_of=[_condition(item) for item in request.filters.get("and", [])],
        any_of=[_condition(item) for item in request.filters.get("or", [])],
        none_of=[_condition(item) for item in request.filters.get("not", [])],
    )


def _check_size(filters: list[FilterItem] | dict[str, list[FilterItem]]) -> None:
    """Bounds on one body, so that evaluating it on every record a listing reads stays cheap."""
    items = filters if isinstance(filters, list) else [item for group in filters.values() for item in group]
    if len(items) > MAX_CONDITIONS:
        raise ApiError(400, f"filters: at most {MAX_CONDITIONS} conditions", field="filters")
    if sum(len(item.value) if isinstance(item.value, list) else 1 for item in items) > MAX_VALUES:
        raise ApiError(400, f"filters: at most {MAX_VALUES} values in all conditions together",
                       field="filters.value")


def _condition(item: FilterItem) -> Condition:
    operator = OPERATOR_SPELLINGS.get(item.operator.strip().lower())
    if operator is None:
        raise ApiError(400, f"filters: unsupported operator {item.operator!r}; use one of "
                       f"{', '.join(sorted(set(OPERATOR_SPELLINGS)))}", field="filters.operator")
    path = tuple(part for part in _PATH_SEPARATORS.split(item.column) if part)
    if item.field:
        path += tuple(part for part in _PATH_SEPARATORS.split(item.field) if part)
    if not path:
        raise ApiError(400, "filters: a condition needs a column", field="filters.column")
    value = item.value
    if operator in LIKES and isinstance(value, str) and len(value) > MAX_PATTERN_LENGTH:
        raise ApiError(400, f"filters: a pattern is at most {MAX_PATTERN_LENGTH} characters", field="filters.value")
    if operator in (Operator.IN, Operator.NOT_IN):
        value = list(value) if isinstance(value, list | tuple) else [value]
        if len(value) > MAX_VALUES:
            raise ApiError(400, f"filters: at most {MAX_VALUES} values in one condition", field="filters.value")
    elif isinstance(value, list) and operator in (Operator.EQ, Operator.NE):
        operator = Operator.IN if operator is Operator.EQ else Operator.NOT_IN  # lenient: eq with a list
    elif operator in (Operator.CONTAINS_ALL, Operator.CONTAINED_BY) and isinstance(value, str):
        value = _json_or_text(value)
    return Condition(path, operator, value)


def _json_or_text(value: str) -> Any:
    """A JSON object or array written as text (as OpenKAT's clients do for @> and <@), else the text."""
    try:
        decoded = json.loads(value)
    except (ValueError, RecursionError):
        return value
    if not isinstance(decoded, dict | list):
        return value
    if _depth(decoded) > MAX_VALUE_DEPTH:
        raise ApiError(400, f"filters: a value nests deeper than {MAX_VALUE_DEPTH} levels", field="filters.value")
    return decoded


def _depth(value: Any) -> int:
    """How deep a decoded JSON value nests, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        current, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(current, dict):
            stack += [(child, depth + 1) for child in current.values()]
        elif isinstance(current, list):
            stack += [(child, depth + 1) for child in current]
    return deepest


def _lookup(subject: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(subject, Mapping):
            return None
        subject = subject.get(part)
    return subject


def _comparable(value: Any) -> Any:
    """Datetimes compare with their ISO strings; everything else as it is."""
    return value.isoformat() if isinstance(value, datetime) else value


def _compare(actual: Any, operator: Operator, expected: Any) -> bool:
    actual = _comparable(actual)
    match operator:
        case Operator.EQ:
            return bool(actual == expected)
        case Operator.NE:
            return bool(actual != expected)
        case Operator.IN:
            return actual in expected
        case Operator.NOT_IN:
            return actual not in expected
        case Operator.IS_NULL:
            return actual is None
        case Operator.IS_NOT_NULL:
            return actual is not None
        case Operator.LIKE | Operator.ILIKE | Operator.NOT_LIKE | Operator.NOT_ILIKE:
            if not isinstance(actual, str) or not isinstance(expected, str):
                return False
            if operator in (Operator.ILIKE, Operator.NOT_ILIKE):
                actual, expected = actual.casefold(), expected.casefold()
            return _like(actual, expected) is (operator in (Operator.LIKE, Operator.ILIKE))
        case Operator.STARTS_WITH:
            return isinstance(actual, str) and isinstance(expected, str) and actual.startswith(expected)
        case Operator.CONTAINS:
            if isinstance(actual, str):
                return isinstance(expected, str) and expected in actual
            return _contains(actual, expected) or (isinstance(actual, list) and expected in actual)
        case Operator.CONTAINS_ALL:
            return _contains(actual, expected)
        case Operator.CONTAINED_BY:
            return actual is not None and _contains(expected, actual)
    try:
        if operator is Operator.GT:
            return bool(actual > expected)
        if operator is Operator.GTE:
            return bool(actual >= expected)
        if operator is Operator.LT:
            return bool(actual < expected)
        return bool(actual <= expected)
    except TypeError:  # incomparable types never match
        return False


def _contains(outer: Any, inner: Any) -> bool:
    """JSON containment as Postgres' @> has it: every key of an object and every element of an array
    of `inner` is in `outer`, recursively; scalars are equal."""
    if isinstance(outer, Mapping) and isinstance(inner, Mapping):
        return all(key in outer and _contains(outer[key], value) for key, value in inner.items())
    if isinstance(outer, list):
        inners = inner if isinstance(inner, list) else [inner]
        return all(any(_contains(element, wanted) for element in outer) for wanted in inners)
    return bool(outer == inner)


def _like(text: str, pattern: str) -> bool:
    """SQL LIKE: `%` any run of characters, `_` any one character, `\\` escapes the next one. The
    pieces between the `%`s are matched leftmost first, which is exact for LIKE and takes no longer than
    len(text) * len(pattern) (no regular expression to backtrack)."""
    pieces = _like_pieces(pattern)
    if len(pieces) == 1:
        return len(text) == len(pieces[0]) and _piece_at(text, pieces[0], 0)
    first, *middle, last = pieces
    if len(text) < len(first) + len(last) or not _piece_at(text, first, 0) or \
            not _piece_at(text, last, len(text) - len(last)):
        return False
    position, end = len(first), len(text) - len(last)
    for piece in middle:
        found = _find_piece(text, piece, position, end)
        if found < 0:
            return False
        position = found + len(piece)
    return True


_ANY_ONE = None  # a `_` in a LIKE piece


def _like_pieces(pattern: str) -> list[list[str | None]]:
    """The pattern split at its unescaped `%`s; in each piece a character, or _ANY_ONE for `_`."""
    pieces: list[list[str | None]] = [[]]
    escaped = False
    for char in pattern:
        if escaped:
            pieces[-1].append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            pieces.append([])
        else:
            pieces[-1].append(_ANY_ONE if char == "_" else char)
    return pieces


def _piece_at(text: str, piece: list[str | None], position: int) -> bool:
    return position + len(piece) <= len(text) and all(
        wanted is _ANY_ONE or wanted == text[position + n] for n, wanted in enumerate(piece))


def _find_piece(text: str, piece: list[str | None], start: int, end: int) -> int:
    if _ANY_ONE not in piece:
        return text.find("".join(piece), start, end)  # type: ignore[arg-type]
    for position in range(start, end - len(piece) + 1):
        if _piece_at(text, piece, position):
            return position
    return -1


# -- pops: which plugins a runner will take --------------------------------------------------------

# The payload paths that name a task's plugin (each kind's `plugin_path`) and its image. Like OpenKAT's
# scheduler, a condition on another kind's path (data.boefje.id on the normalizer queue) matches no task.
ANY_KIND_PLUGIN_PATHS = {("plugin_id",), ("plugin", "id")}
OCI_IMAGE_PATHS = {("boefje", "oci_image"), ("oci_image",)}


@dataclass(frozen=True, slots=True)
class PluginConstraint:
    """One pop condition: the plugin must be one of `values`, given as plugin ids or OCI images."""

    by_image: bool
    values: frozenset[str]


@dataclass
class PopFilter:
    """all_of: every constraint must hold; any_of: at least one (when there are any)."""

    all_of: list[PluginConstraint] = field(default_factory=list)
    any_of: list[PluginConstraint] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.all_of or self.any_of)

    @property
    def images(self) -> set[str]:
        return {image for c in (*self.all_of, *self.any_of) if c.by_image for image in c.values}

    def plugin_ids(self, plugins_of_image: dict[str, set[str]]) -> set[str]:
        """The plugin ids a claim may take, given which plugins each requested image runs."""
        def allowed(constraint: PluginConstraint) -> set[str]:
            if not constraint.by_image:
                return set(constraint.values)
            return {plugin for image in constraint.values for plugin in plugins_of_image.get(image, ())}

        result: set[str] | None = None
        for constraint in self.all_of:
            result = allowed(constraint) if result is None else result & allowed(constraint)
        if self.any_of:
            union = set().union(*(allowed(c) for c in self.any_of))
            result = union if result is None else result & union
        return result or set()


def plugin_constraints(filters: FilterSet, kind: str) -> PopFilter:
    """The plugin conditions of a pop's filter on the `kind` queue; 400 for a condition a claim cannot
    honour."""
    if filters.none_of:
        raise ApiError(400, "pop filters: 'not' conditions are not supported", field="filters")
    return PopFilter([_constraint(c, kind) for c in filters.all_of], [_constraint(c, kind) for c in filters.any_of])


def _constraint(condition: Condition, kind: str) -> PluginConstraint:
    path = condition.path[1:] if condition.path[:1] == ("data",) and len(condition.path) > 1 else condition.path
    plugin_paths = {*(known.plugin_path for known in KINDS.values()), *ANY_KIND_PLUGIN_PATHS}
    if path not in plugin_paths and path not in OCI_IMAGE_PATHS:
        named = ", ".join(f"data.{'.'.join(known.plugin_path)}" for known in KINDS.values())
        raise ApiError(400, f"pop filters: cannot filter on {'.'.join(condition.path)!r}; use {named} "
                       "or data.boefje.oci_image", field="filters")
    if condition.operator not in (Operator.EQ, Operator.IN):
        raise ApiError(400, f"pop filters: operator {condition.operator.value!r} is not supported; use in or eq",
                       field="filters.operator")
    values = condition.value if isinstance(condition.value, list) else [condition.value]
    if not all(isinstance(value, str) for value in values):
        raise ApiError(400, "pop filters: plugin ids and images are strings", field="filters.value")
    if path in OCI_IMAGE_PATHS:
        return PluginConstraint(by_image=True, values=frozenset(values) if kind == "boefje" else frozenset())
    if path not in ANY_KIND_PLUGIN_PATHS and path != KINDS[kind].plugin_path:
        return PluginConstraint(by_image=False, values=frozenset())  # the other kind's plugin: no task has it
    return PluginConstraint(by_image=False, values=frozenset(values))
