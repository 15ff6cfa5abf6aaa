"""The subset of ServiceNow's encoded query (``sysparm_query``) the simulator understands.

Grammar, as the Table API reads it: terms joined by ``^`` (AND); a term starting with ``OR`` after the
``^`` joins the previous term with OR (``a=1^b=2^ORb=3`` is ``a=1 AND (b=2 OR b=3)``); ``ORDERBY<f>`` and
``ORDERBYDESC<f>`` sort. A term is ``<field><operator><value>`` with lower-case field names, so
``correlation_displaySTARTSWITHitsm`` splits at the first upper-case operator. Matching is
case-sensitive. Like the real API, a term it cannot read (no operator, or a field the table does not
have) is silently ignored, which is why the connector never builds a query from unchecked input.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

#: Operators, longest first so ``>=`` wins over ``>`` and ``NOTLIKE`` over ``LIKE``.
OPERATORS: tuple[str, ...] = (
    "ISNOTEMPTY", "ISEMPTY", "STARTSWITH", "ENDSWITH", "NOTLIKE", "NOT IN", "LIKE", "IN",
    "!=", ">=", "<=", "=", ">", "<",
)
_FIELD = re.compile(r"[a-z0-9_.]+")


@dataclass(frozen=True)
class Term:
    """One condition: ``field``, ``op`` (one of `OPERATORS`), ``value`` (raw text)."""

    field: str
    op: str
    value: str


@dataclass(frozen=True)
class Query:
    """A parsed query: AND of OR-groups of terms, then sort keys ``(field, descending)``."""

    groups: tuple[tuple[Term, ...], ...] = ()
    order: tuple[tuple[str, bool], ...] = field(default=())


def parse_term(text: str, known: Collection[str] | None = None) -> Term | None:
    """A term from ``<field><op><value>``; None when it has no operator or names an unknown field."""
    match = _FIELD.match(text)
    if match is None:
        return None
    name, rest = match.group(0), text[match.end():]
    if known is not None and name not in known:
        return None
    for op in OPERATORS:
        if rest.startswith(op):
            return Term(name, op, rest[len(op):])
    return None


def parse_query(text: str | None, known: Collection[str] | None = None) -> Query:
    """Parse an encoded query; terms the table cannot evaluate are dropped, as ServiceNow does."""
    groups: list[list[Term]] = []
    order: list[tuple[str, bool]] = []
    for part in (text or "").split("^"):
        if not part or part == "EQ" or part == "NQ":
            continue
        if part.startswith("ORDERBYDESC"):
            if known is None or part[11:] in known:
                order.append((part[11:], True))
            continue
        if part.startswith("ORDERBY"):
            if known is None or part[7:] in known:
                order.append((part[7:], False))
            continue
        if part.startswith("OR") and groups:
            term = parse_term(part[2:], known)
            if term is not None:
                groups[-1].append(term)
                continue
        term = parse_term(part, known)
        if term is not None:
            groups.append([term])
    return Query(tuple(tuple(group) for group in groups), tuple(order))


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _compare(left: str, right: str) -> int:
    """Numbers compare as numbers (``sys_mod_count``, ``priority``), everything else as text (dates too)."""
    a, b = _number(left), _number(right)
    if a is not None and b is not None:
        return (a > b) - (a < b)
    return (left > right) - (left < right)


#: What each operator checks, given a record's raw value and the term's value (built once: a query
#: runs against every record of the table).
_CHECKS: dict[str, Callable[[str, str], bool]] = {
    "=": lambda value, wanted: value == wanted,
    "!=": lambda value, wanted: value != wanted,
    "LIKE": lambda value, wanted: wanted in value,
    "NOTLIKE": lambda value, wanted: wanted not in value,
    "STARTSWITH": lambda value, wanted: value.startswith(wanted),
    "ENDSWITH": lambda value, wanted: value.endswith(wanted),
    "IN": lambda value, wanted: value in wanted.split(","),
    "NOT IN": lambda value, wanted: value not in wanted.split(","),
    "ISEMPTY": lambda value, _wanted: value == "",
    "ISNOTEMPTY": lambda value, _wanted: value != "",
    ">=": lambda value, wanted: _compare(value, wanted) >= 0,
    ">": lambda value, wanted: _compare(value, wanted) > 0,
    "<=": lambda value, wanted: _compare(value, wanted) <= 0,
    "<": lambda value, wanted: _compare(value, wanted) < 0,
}


def term_matches(term: Term, value: str) -> bool:
    """Whether a record's raw `value` for ``term.field`` satisfies the term."""
    return _CHECKS[term.op](value, term.value)


def matches(query: Query, record: Mapping[str, str]) -> bool:
    """Whether `record` (raw string values) satisfies every AND group of `query`."""
    return all(any(term_matches(term, record.get(term.field, "")) for term in group) for group in query.groups)


def select(query: Query, records: Iterable[Mapping[str, str]]) -> list[Mapping[str, str]]:
    """The matching records in the query's order (stable: ties keep insertion order)."""
    found = [record for record in records if matches(query, record)]
    for name, descending in reversed(query.order):
        found.sort(key=lambda record: _sort_key(record.get(name, "")), reverse=descending)
    return found


def _sort_key(value: str) -> tuple[int, float, str]:
    number = _number(value)
    return (0, number, "") if number is not None else (1, 0.0, value)
