"""OpenKAT's filter bodies, read leniently and turned into plain conditions.

OpenKAT sends `{"filters": [{"column": "data", "field": "boefje__id", "operator": "in", "value": [...]}]}`,
or `{"filters": {"and": [...], "or": [...], "not": [...]}}`. A field path may be written with `__`, `.`,
`->` or `->>` between its parts, and the column may be left out when the field names it
("data.boefje.id"). Pops use the conditions on the plugin (see `plugin_constraints`); schedule searches
evaluate them on the schedule (`FilterSet.matches`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kat_scheduler.server.errors import ApiError

MAX_VALUES = 1000  # values in one "in" condition


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


OPERATOR_SPELLINGS: dict[str, Operator] = {
    "==": Operator.EQ, "=": Operator.EQ, "eq": Operator.EQ, "is": Operator.EQ,
    "!=": Operator.NE, "ne": Operator.NE, "is_not": Operator.NE, "isnot": Operator.NE,
    "in": Operator.IN, "not_in": Operator.NOT_IN, "notin": Operator.NOT_IN,
    ">": Operator.GT, "gt": Operator.GT, ">=": Operator.GTE, "gte": Operator.GTE,
    "<": Operator.LT, "lt": Operator.LT, "<=": Operator.LTE, "lte": Operator.LTE,
    "like": Operator.LIKE, "ilike": Operator.ILIKE,
}
_PATH_SEPARATORS = re.compile(r"__|->>|->|\.")


class FilterItem(BaseModel):
    """One condition as OpenKAT writes it."""

    model_config = ConfigDict(extra="ignore")

    column: str = Field(max_length=200)
    field: str | None = Field(None, max_length=500)
    operator: str = Field("eq", max_length=20)
    value: Any = None


class FilterRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    filters: list[FilterItem] | dict[str, list[FilterItem]] | None = None


@dataclass(frozen=True, slots=True)
class Condition:
    path: tuple[str, ...]
    operator: Operator
    value: Any

    def matches(self, subject: dict[str, Any]) -> bool:
        return _compare(_lookup(subject, self.path), self.operator, self.value)


@dataclass
class FilterSet:
    """all_of and (any_of empty or one of any_of) and none of none_of."""

    all_of: list[Condition] = field(default_factory=list)
    any_of: list[Condition] = field(default_factory=list)
    none_of: list[Condition] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.all_of or self.any_of or self.none_of)

    def matches(self, subject: dict[str, Any]) -> bool:
        return (all(c.matches(subject) for c in self.all_of)
                and (not self.any_of or any(c.matches(subject) for c in self.any_of))
                and not any(c.matches(subject) for c in self.none_of))


def parse(request: FilterRequest | None) -> FilterSet:
    """The plain conditions of a filter body; 400 naming the first condition that cannot be read."""
    if request is None or request.filters is None:
        return FilterSet()
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
    if operator in (Operator.IN, Operator.NOT_IN):
        value = list(value) if isinstance(value, list | tuple) else [value]
        if len(value) > MAX_VALUES:
            raise ApiError(400, f"filters: at most {MAX_VALUES} values in one condition", field="filters.value")
    elif isinstance(value, list) and operator in (Operator.EQ, Operator.NE):
        operator = Operator.IN if operator is Operator.EQ else Operator.NOT_IN  # lenient: eq with a list
    return Condition(path, operator, value)


def _lookup(subject: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(subject, dict):
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
        case Operator.LIKE | Operator.ILIKE:
            if not isinstance(actual, str) or not isinstance(expected, str):
                return False
            if operator is Operator.ILIKE:
                return _like(actual.casefold(), expected.casefold())
            return _like(actual, expected)
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


def _like(text: str, pattern: str) -> bool:
    """SQL LIKE with % as the only wildcard, in linear time (no regular expression to backtrack)."""
    parts = pattern.split("%")
    if len(parts) == 1:
        return text == pattern
    first, *middle, last = parts
    if not text.startswith(first) or not text.endswith(last) or len(text) < len(first) + len(last):
        return False
    position, end = len(first), len(text) - len(last)
    for part in middle:
        found = text.find(part, position, end)
        if found < 0:
            return False
        position = found + len(part)
    return True


# -- pops: which plugins a runner will take --------------------------------------------------------

PLUGIN_ID_PATHS = {("boefje", "id"), ("normalizer", "id"), ("plugin_id",), ("plugin", "id")}
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


def plugin_constraints(filters: FilterSet) -> PopFilter:
    """The plugin conditions of a pop's filter; 400 for a condition a claim cannot honour."""
    if filters.none_of:
        raise ApiError(400, "pop filters: 'not' conditions are not supported", field="filters")
    return PopFilter([_constraint(c) for c in filters.all_of], [_constraint(c) for c in filters.any_of])


def _constraint(condition: Condition) -> PluginConstraint:
    path = condition.path[1:] if condition.path[:1] == ("data",) and len(condition.path) > 1 else condition.path
    if path not in PLUGIN_ID_PATHS and path not in OCI_IMAGE_PATHS:
        raise ApiError(400, f"pop filters: cannot filter on {'.'.join(condition.path)!r}; use data.boefje.id, "
                       "data.normalizer.id or data.boefje.oci_image", field="filters")
    if condition.operator not in (Operator.EQ, Operator.IN):
        raise ApiError(400, f"pop filters: operator {condition.operator.value!r} is not supported; use in or eq",
                       field="filters.operator")
    values = condition.value if isinstance(condition.value, list) else [condition.value]
    if not all(isinstance(value, str) for value in values):
        raise ApiError(400, "pop filters: plugin ids and images are strings", field="filters.value")
    return PluginConstraint(by_image=path in OCI_IMAGE_PATHS, values=frozenset(values))
