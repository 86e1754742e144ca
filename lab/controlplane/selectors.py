"""Label and field selectors for list and watch (the subset clients send)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from . import errors

Obj = dict[str, Any]
Predicate = Callable[[Obj], bool]

_SET_TERM = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_terms(selector: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        terms.append(current)
    return [t.strip() for t in terms if t.strip()]


def _term(term: str, value_of: Callable[[Obj, str], str | None]) -> Predicate:
    set_match = _SET_TERM.match(term)
    if set_match:
        key, operator, raw = set_match.groups()
        values = {v.strip() for v in raw.split(",")}
        if operator == "in":
            return lambda o: value_of(o, key) in values
        return lambda o: value_of(o, key) not in values
    for operator in ("!=", "==", "="):
        if operator in term:
            key, value = (s.strip() for s in term.split(operator, 1))
            if operator == "!=":
                return lambda o: value_of(o, key) != value
            return lambda o: value_of(o, key) == value
    if term.startswith("!"):
        key = term[1:].strip()
        return lambda o: value_of(o, key) is None
    if re.fullmatch(r"[\w./-]+", term):
        return lambda o: value_of(o, term) is not None
    raise errors.bad_request(f"unable to parse requirement: {term!r}")


def _label(obj: Obj, key: str) -> str | None:
    value = (obj.get("metadata", {}).get("labels") or {}).get(key)
    return None if value is None else str(value)


def _field(obj: Obj, key: str) -> str | None:
    current: Any = obj
    for part in key.split("."):
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    return None if current is None else str(current)


def matcher(label_selector: str | None, field_selector: str | None) -> Predicate:
    predicates = [_term(t, _label) for t in _split_terms(label_selector or "")]
    predicates += [_term(t, _field) for t in _split_terms(field_selector or "")]
    return lambda obj: all(p(obj) for p in predicates)
