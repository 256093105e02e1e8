"""Typed reads from a parsed YAML mapping, with errors that name the field.

`Fields` wraps one mapping and the path leading to it (`server`, `options.estargz`). Each read
checks the type and raises `FieldError(path, message)`; `done()` rejects keys nobody read, with
a suggestion when a known key is close (typo protection).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

from policies.quantities import parse_duration, parse_size

T = TypeVar("T")

_MISSING: Any = object()


class FieldError(ValueError):
    """A value at `path` that is not what was expected; `message` says what."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


def join_path(parent: str, key: str) -> str:
    if key.startswith("["):
        return parent + key
    return f"{parent}.{key}" if parent else key


def describe(value: object) -> str:
    """A value for an error message: type names for containers, never their contents."""
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return repr(value) if isinstance(value, bool | int | float) else f'"{value}"'


def suggestion(word: str, known: tuple[str, ...]) -> str:
    """` (did you mean "x"?)` for the closest of `known`, or "" when none is close."""
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


class Fields:
    def __init__(self, data: object, path: str = "") -> None:
        if not isinstance(data, Mapping):
            raise FieldError(path, f"expected a mapping, got {describe(data)}")
        self._data: Mapping[Any, Any] = data
        self.path = path
        self._read: set[str] = set()

    def has(self, key: str) -> bool:
        return key in self._data

    def keys(self) -> tuple[str, ...]:
        return tuple(str(key) for key in self._data)

    def where(self, key: str) -> str:
        return join_path(self.path, key)

    def _get(self, key: str, default: Any) -> Any:
        self._read.add(key)
        value = self._data.get(key, _MISSING)
        if value is _MISSING or value is None:
            if default is _MISSING:
                raise FieldError(self.where(key), "required" + self._misspelling_of(key))
            return default
        return value

    def _typed(self, key: str, default: Any, kind: type | tuple[type, ...], what: str) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            raise FieldError(self.where(key), f"expected {what}, got {describe(value)}")
        return value

    def _misspelling_of(self, key: str) -> str:
        present = tuple(str(k) for k in self._data if k not in self._read)
        close = difflib.get_close_matches(key, present, n=1, cutoff=0.6)
        return f' (is "{close[0]}" a misspelling of it?)' if close else ""

    def raw(self, key: str) -> Any:
        """The value at `key` as parsed, None when absent, for a parser of its own."""
        return self._get(key, None)

    def string(self, key: str, default: Any = _MISSING) -> Any:
        value = self._typed(key, default, str, "a string")
        if value == "" and default is _MISSING:
            raise FieldError(self.where(key), "must not be empty")
        return value

    def boolean(self, key: str, default: Any = _MISSING) -> Any:
        return self._typed(key, default, bool, "true or false")

    def integer(self, key: str, default: Any = _MISSING, *, low: int, high: int) -> Any:
        value = self._typed(key, default, int, "an integer")
        if value is not default and not low <= value <= high:
            raise FieldError(self.where(key), f"expected {low} to {high}, got {value}")
        return value

    def number(self, key: str, default: Any = _MISSING, *, low: float) -> Any:
        value = self._typed(key, default, (int, float), "a number")
        if value is not default and value < low:
            raise FieldError(self.where(key), f"expected at least {low}, got {value}")
        return value

    def strings(self, key: str, default: Any = _MISSING) -> Any:
        value = self._typed(key, default, list, "a list of strings")
        if value is default:
            return value
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise FieldError(
                    self.where(key) + f"[{i}]", f"expected a non-empty string, got {describe(item)}"
                )
        return tuple(value)

    def each(self, key: str, parse: Callable[[str], T]) -> tuple[T, ...]:
        """`parse` applied to every string of the list at `key` (empty when absent)."""
        out: list[T] = []
        for i, item in enumerate(self.strings(key, ())):
            try:
                out.append(parse(item))
            except ValueError as exc:
                raise FieldError(self.where(key) + f"[{i}]", str(exc)) from None
        return tuple(out)

    def converted(self, key: str, default: Any, parse: Callable[[object], T]) -> T:
        value = self._get(key, _MISSING if default is _MISSING else None)
        if value is None:
            return default  # type: ignore[no-any-return]
        try:
            return parse(value)
        except ValueError as exc:
            raise FieldError(self.where(key), str(exc)) from None

    def duration(self, key: str, default: Any = _MISSING) -> timedelta:
        return self.converted(key, default, parse_duration)

    def size(self, key: str, default: Any = _MISSING) -> int:
        return self.converted(key, default, parse_size)

    def child(self, key: str, *, optional: bool = False) -> Fields:
        value = self._get(key, {} if optional else _MISSING)
        return Fields(value, self.where(key))

    def done(self) -> None:
        known = tuple(sorted(self._read))
        for key in self._data:
            if key not in self._read:
                raise FieldError(self.where(str(key)), "unknown key" + suggestion(str(key), known))
