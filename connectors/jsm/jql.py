"""The JQL subset the simulator understands: enough for what the connector sends, strict about the rest.

Supported (api-facts §3): clauses ``field = value``, ``!=``, ``>=``, ``<=``, ``>``, ``<``, ``in (...)``,
``not in (...)`` over ``project``, ``key``/``issuekey``, ``labels``, ``status``, ``statusCategory``,
``priority``, ``updated``, ``created`` and ``issue.property[<key>].<path>``; ``AND``, ``OR``, ``NOT`` and
parentheses; ``ORDER BY <field> [ASC|DESC], ...``. Values are bare words or quoted strings (``"..."`` or
``'...'`` with backslash escapes); dates are ``yyyy-MM-dd[ HH:mm]`` (also with ``/``), read in the
searching user's time zone, which is UTC for every simulated user. Anything else is a `JqlError`, which
the simulator answers as Jira does: 400 with ``"Error in the JQL Query: ..."``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Union

FIELDS = frozenset({"project", "key", "issuekey", "labels", "status", "statuscategory", "priority",
                    "updated", "created"})
DATE_FIELDS = frozenset({"updated", "created"})
_TOKEN = re.compile(r"""\s*(?:(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<op>!=|>=|<=|=|>|<|~)"""
                    r"""|(?P<punct>[(),])|(?P<word>issue\.property\[[^\]]+\](?:\.[\w.]+)?|[^\s(),=!<>~"']+))""")
_DATE_FORMATS = ("%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d", "%Y/%m/%d")


class JqlError(ValueError):
    """The query is not valid (in this subset); the message is what Jira would show."""


@dataclass(frozen=True)
class Clause:
    field: str          # lower-cased name, or "issue.property[key].path" as written
    op: str             # =, !=, >=, <=, >, <, in, not in
    values: tuple[str, ...]


@dataclass(frozen=True)
class Bool:
    op: str             # and, or, not
    parts: tuple[Node, ...]


Node = Union[Clause, Bool, None]


@dataclass(frozen=True)
class Query:
    where: Node
    order: tuple[tuple[str, bool], ...]   # (field, descending)


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise JqlError(f"Error in the JQL Query: the character '{text[position:].strip()[:1]}' is a reserved "
                           f"JQL character (at position {position}).")
        kind = match.lastgroup or "word"
        value = match.group(kind)
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        tokens.append((kind, value))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.index = 0

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        at = self.index + offset
        return self.tokens[at] if at < len(self.tokens) else None

    def keyword(self, *words: str) -> bool:
        token = self.peek()
        return token is not None and token[0] == "word" and token[1].lower() in words

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise JqlError("Error in the JQL Query: Expecting more of the query, but got the end of the query.")
        self.index += 1
        return token

    def parse(self) -> Query:
        where: Node = None
        if self.peek() is not None and not self.keyword("order"):
            where = self.or_expr()
        order: list[tuple[str, bool]] = []
        if self.keyword("order"):
            self.take()
            if not self.keyword("by"):
                raise JqlError("Error in the JQL Query: Expecting 'BY' after 'ORDER'.")
            self.take()
            while True:
                name = self.field()
                descending = False
                if self.keyword("asc", "desc"):
                    descending = self.take()[1].lower() == "desc"
                order.append((name, descending))
                if self.peek() == ("punct", ","):
                    self.take()
                    continue
                break
        if self.peek() is not None:
            raise JqlError(f"Error in the JQL Query: Expecting operator but got '{self.peek()[1]}'.")  # type: ignore[index]
        return Query(where, tuple(order))

    def or_expr(self) -> Node:
        parts = [self.and_expr()]
        while self.keyword("or"):
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else Bool("or", tuple(parts))

    def and_expr(self) -> Node:
        parts = [self.unary()]
        while self.keyword("and"):
            self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else Bool("and", tuple(parts))

    def unary(self) -> Node:
        if self.keyword("not"):
            self.take()
            return Bool("not", (self.unary(),))
        if self.peek() == ("punct", "("):
            self.take()
            inner = self.or_expr()
            if self.take() != ("punct", ")"):
                raise JqlError("Error in the JQL Query: Expecting ')' before the end of the query.")
            return inner
        return self.clause()

    def field(self) -> str:
        kind, word = self.take()
        if kind not in ("word", "string"):
            raise JqlError(f"Error in the JQL Query: Expecting a field name but got '{word}'.")
        if word.startswith("issue.property["):
            return word
        name = word.lower()
        if name not in FIELDS:
            raise JqlError(f"Field '{word}' does not exist or you do not have permission to view it.")
        return name

    def clause(self) -> Clause:
        name = self.field()
        kind, op = self.take()
        if kind == "word" and op.lower() == "not" and self.keyword("in"):
            self.take()
            op = "not in"
        elif kind == "word" and op.lower() == "in":
            op = "in"
        elif kind != "op" or op == "~":
            raise JqlError(f"Error in the JQL Query: The operator '{op}' is not supported for field '{name}'.")
        if op in ("in", "not in"):
            if self.take() != ("punct", "("):
                raise JqlError(f"Error in the JQL Query: Expecting '(' after '{op}'.")
            values = [self.value()]
            while self.peek() == ("punct", ","):
                self.take()
                values.append(self.value())
            if self.take() != ("punct", ")"):
                raise JqlError("Error in the JQL Query: Expecting ')' to close the list.")
            return Clause(name, op, tuple(values))
        return Clause(name, op, (self.value(),))

    def value(self) -> str:
        kind, word = self.take()
        if kind not in ("word", "string") or (kind == "word" and word.lower() in ("and", "or", "order")):
            raise JqlError(f"Error in the JQL Query: Expecting either a value, list or function but got '{word}'.")
        return word


def parse_jql(text: str | None) -> Query:
    """Parse `text` (empty: every issue); `JqlError` with Jira's wording when it is not valid."""
    return _Parser(text or "").parse()


def parse_jql_date(text: str) -> datetime:
    """A JQL date literal as an aware UTC datetime (simulated users search in UTC)."""
    for pattern in _DATE_FORMATS:
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    raise JqlError(f"Date value '{text}' for field is invalid. Valid formats include: 'yyyy/MM/dd HH:mm', "
                   "'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format e.g. '-5d', '4w 2d'.")


Accessor = Callable[[Any, str], Any]


def matches(node: Node, issue: Any, value_of: Accessor) -> bool:
    """Whether `issue` satisfies `node`; `value_of(issue, field)` gives a string, a list or a datetime."""
    if node is None:
        return True
    if isinstance(node, Bool):
        if node.op == "not":
            return not matches(node.parts[0], issue, value_of)
        results = (matches(part, issue, value_of) for part in node.parts)
        return all(results) if node.op == "and" else any(results)
    actual = value_of(issue, node.field)
    if node.field in DATE_FIELDS:
        wanted = parse_jql_date(node.values[0])
        return _compare(actual, node.op, wanted) if actual is not None else False
    have = [str(v).lower() for v in actual] if isinstance(actual, (list, tuple)) else (
        [] if actual is None else [str(actual).lower()])
    wanted_values = {value.lower() for value in node.values}
    if node.op in ("=", "in"):
        return bool(wanted_values & set(have))
    if node.op in ("!=", "not in"):
        return not wanted_values & set(have)
    if not have:
        return False
    return _compare(have[0], node.op, node.values[0].lower())


def _compare(actual: Any, op: str, wanted: Any) -> bool:
    return {"=": actual == wanted, "!=": actual != wanted, ">=": actual >= wanted, "<=": actual <= wanted,
            ">": actual > wanted, "<": actual < wanted}.get(op, False)


def select(query: Query, issues: Sequence[Any], value_of: Accessor) -> list[Any]:
    """The issues matching `query`, in its ORDER BY order (default: newest created first, as Jira)."""
    found = [issue for issue in issues if matches(query.where, issue, value_of)]
    order = query.order or (("created", True),)
    for name, descending in reversed(order):
        found.sort(key=lambda issue: _sort_key(value_of(issue, name)), reverse=descending)
    return found


def _sort_key(value: Any) -> Any:
    if isinstance(value, datetime):
        return (0, value.timestamp(), "")
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    text = "" if value is None else str(value)
    key_match = re.fullmatch(r"([A-Z][A-Z0-9_]*)-(\d+)", text)
    if key_match:  # issue keys sort by project, then number (OPS-10 after OPS-9)
        return (1, int(key_match.group(2)), key_match.group(1))
    return (2, 0, text.lower())
