"""Reading a parsed study table against the schema: unknown keys, types, bounds, choices.

Generic over the dataclasses of :mod:`cce_bench.config.schema`: a field's annotation says which
TOML type it takes (``bool`` is not an ``int`` here, though Python says it is; an integer is
accepted where a float is expected, as TOML writes ``0`` for zero), its metadata the bounds and
choices. Every problem raises one :class:`StudyFileError` whose message names the file, the
dotted key, what is wrong and the fix, because that line is all the user sees (exit code 2).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from cce_bench.config.schema import LOADED, Initialisation, Range, StudySpec, toml_value
from cce_bench.errors import StudyConfigError, closest


class StudyFileError(StudyConfigError):
    """One problem in one study file, naming the file (``origin``) and the dotted ``key``."""

    def __init__(self, origin: str, key: str | None, detail: str) -> None:
        self.origin = origin
        self.key = key
        self.detail = detail
        super().__init__(f"{origin}: {detail}")

    def __reduce__(self) -> tuple[type, tuple[str, str | None, str]]:
        # Exceptions pickle their args; this one's constructor takes three (Ray, multiprocessing).
        return (type(self), (self.origin, self.key, self.detail))


def read_table(cls: type, table: dict[str, Any], origin: str, prefix: str = "") -> Any:
    """Build the dataclass ``cls`` from a parsed TOML ``table``, or raise ``StudyFileError``."""
    members = {item.name: item for item in fields(cls) if not item.metadata.get(LOADED)}
    for key in table:
        if key not in members:
            raise StudyFileError(origin, prefix + key, _unknown_key_detail(prefix + key))
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, item in members.items():
        key = prefix + name
        if name not in table:
            if item.default is MISSING and item.default_factory is MISSING:
                raise StudyFileError(origin, key, f"missing required key `{key}`; add it")
            continue
        hint, raw = hints[name], table[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(raw, dict):
                raise StudyFileError(
                    origin, key, f"`{key}` must be a table, got {_show(raw)}; write it as [{key}]"
                )
            values[name] = read_table(hint, raw, origin, key + ".")
        else:
            values[name] = _read_value(raw, hint, item, key, origin)
    return cls(**values)


#: ``models.pretrained``'s type: one initialisation, or a table of them by backbone.
_INITIALISATIONS = (bool, Path, dict[str, Initialisation])


def _read_value(raw: Any, hint: Any, item: dataclasses.Field, key: str, origin: str) -> Any:
    expected = _strip_none(hint)
    if expected == _INITIALISATIONS and isinstance(raw, dict):
        return _read_initialisations(raw, key, origin)
    value = _coerce(raw, expected)
    if value is _WRONG_TYPE:
        example = item.default if item.default not in (MISSING, None) else None
        leaf = key.rsplit(".", 1)[-1]
        fix = f"; write e.g. `{leaf} = {toml_value(example)}`" if example is not None else ""
        raise StudyFileError(
            origin, key, f"`{key}` must be {_type_words(expected)}, got {_show(raw)}{fix}"
        )
    if expected == Range:
        low, high = value
        if not low < high:
            raise StudyFileError(
                origin,
                key,
                f"`{key}` must be a range [low, high] with low < high, got "
                f"{_show(raw)}; put the smaller value first",
            )
    numbers = value.values() if isinstance(value, dict) and expected != _INITIALISATIONS else None
    for number in numbers or (value if expected == Range else (value,)):
        if isinstance(number, float | int) and not isinstance(number, bool):
            _check_bounds(number, item.metadata, key, origin)
    choices = item.metadata.get("choices")
    if choices and value not in choices:
        raise StudyFileError(origin, key, unknown_choice_detail(key, value, choices))
    return value


_WRONG_TYPE = object()


def _read_initialisations(table: dict[str, Any], key: str, origin: str) -> dict[str, Any]:
    """A table backbone -> true, false or a weights file path, each entry checked by its key."""
    values = {}
    for name, raw in table.items():
        value = _coerce(raw, (bool, Path))
        if value is _WRONG_TYPE:
            fix = (
                f'quote a backbone name holding a dot: "{name}.{next(iter(raw), "...")}" = ...'
                if isinstance(raw, dict)
                else f'write e.g. `"{name}" = true`'
            )
            raise StudyFileError(
                origin,
                f"{key}.{name}",
                f"`{key}.{name}` must be true, false or a weights file path, got {_show(raw)}; "
                f"{fix}",
            )
        values[name] = value
    return values


def _strip_none(hint: Any) -> Any:
    """``X | None`` -> ``X`` (None only means "unset"; TOML cannot write it)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = tuple(arg for arg in typing.get_args(hint) if arg is not type(None))
        return args[0] if len(args) == 1 else args
    return hint


def _is_number(raw: Any) -> bool:
    """TOML integers and floats, but not booleans (``True`` is an ``int`` in Python)."""
    return isinstance(raw, int | float) and not isinstance(raw, bool)


def _coerce(raw: Any, expected: Any) -> Any:
    """The typed value of ``raw``, or ``_WRONG_TYPE``. An empty path string means unset."""
    if expected is bool:
        return raw if isinstance(raw, bool) else _WRONG_TYPE
    if expected is int:
        return raw if isinstance(raw, int) and not isinstance(raw, bool) else _WRONG_TYPE
    if expected is float:
        return float(raw) if _is_number(raw) and math.isfinite(raw) else _WRONG_TYPE
    if expected is str:
        return raw if isinstance(raw, str) else _WRONG_TYPE
    if expected is Path:
        return (Path(raw) if raw else None) if isinstance(raw, str) else _WRONG_TYPE
    if expected == _INITIALISATIONS:  # a table is read entry by entry before this
        return _coerce(raw, (bool, Path))
    if expected == (bool, Path):
        if isinstance(raw, bool):
            return raw
        return Path(raw) if isinstance(raw, str) and raw else _WRONG_TYPE
    if expected == tuple[str, ...]:
        ok = isinstance(raw, list) and all(isinstance(item, str) for item in raw)
        return tuple(raw) if ok else _WRONG_TYPE
    if expected == (int, str):  # an integer, or the word "auto"
        return raw if raw == "auto" or _coerce(raw, int) is not _WRONG_TYPE else _WRONG_TYPE
    if expected == (float, dict[str, float]):  # one number, or a table of them by backbone
        if not isinstance(raw, dict):
            return _coerce(raw, float)
        values = {name: _coerce(value, float) for name, value in raw.items()}
        return values if all(v is not _WRONG_TYPE for v in values.values()) else _WRONG_TYPE
    if expected == Range:
        ok = isinstance(raw, list) and len(raw) == 2 and all(map(_is_number, raw))
        return (
            (float(raw[0]), float(raw[1])) if ok and all(map(math.isfinite, raw)) else _WRONG_TYPE
        )
    raise TypeError(f"schema type {expected!r} has no reader")  # a bug in the schema itself


def _type_words(expected: Any) -> str:
    words = {
        bool: "true or false",
        int: "an integer",
        float: "a finite number",
        str: "a string",
        Path: "a path string",
        (bool, Path): "true, false or a weights file path",
        _INITIALISATIONS: "true, false, a weights file path or a table of them by backbone",
        tuple[str, ...]: "a list of strings",
        Range: "a range [low, high] of two finite numbers",
        (int, str): 'an integer or "auto"',
        (float, dict[str, float]): "a finite number or a table of them by backbone",
    }
    return words[expected]


def _check_bounds(number: float, metadata: Any, key: str, origin: str) -> None:
    ge, gt, le, lt = (metadata.get(bound) for bound in ("ge", "gt", "le", "lt"))
    low_ok = (ge is None or number >= ge) and (gt is None or number > gt)
    high_ok = (le is None or number <= le) and (lt is None or number < lt)
    if low_ok and high_ok:
        return
    lower = f"[{ge}" if ge is not None else (f"({gt}" if gt is not None else None)
    upper = f"{le}]" if le is not None else (f"{lt})" if lt is not None else None)
    if lower and upper:
        wanted, fix = f"in {lower}, {upper}", f"set it within {lower}, {upper}"
    elif lower:
        wanted = f">= {ge}" if ge is not None else f"> {gt}"
        fix = f"set it to {ge} or more" if ge is not None else f"set it above {gt}"
    else:
        wanted = f"<= {le}" if le is not None else f"< {lt}"
        fix = f"set it to {le} or less" if le is not None else f"set it below {lt}"
    why = f" ({metadata['why']})" if metadata.get("why") else ""
    raise StudyFileError(origin, key, f"`{key}` must be {wanted}{why}, got {number}; {fix}")


def unknown_choice_detail(key: str, value: Any, choices: typing.Iterable[str]) -> str:
    """The message body for a name that is not one of ``choices``, with the closest one."""
    choices = list(choices)
    close = closest(str(value), choices)
    hint = f"did you mean {close!r}?" if close else "pick one of these"
    return f"`{key}` = {value!r} is not one of {', '.join(choices)}; {hint}"


def schema_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of the schema rooted at ``cls``, tables included, in schema order."""
    keys: list[str] = []
    hints = typing.get_type_hints(cls)
    for item in fields(cls):
        if item.metadata.get(LOADED):
            continue
        keys.append(prefix + item.name)
        if dataclasses.is_dataclass(hints[item.name]):
            keys += schema_keys(hints[item.name], prefix + item.name + ".")
    return keys


def _unknown_key_detail(key: str) -> str:
    """Name the closest valid key: a near spelling in its own table, then the same name (or a
    near one) in another table, since a right key in the wrong table is a common slip.
    """
    valid = schema_keys(StudySpec)
    table, _, leaf = key.rpartition(".")
    siblings = [k.rpartition(".")[2] for k in valid if k.rpartition(".")[0] == table]
    close = [f"{table}.{name}" if table else name for name in _near(leaf, siblings)]
    close = close or [k for k in valid if k.rpartition(".")[2] == leaf]
    close = close or [k for k in valid if k.rpartition(".")[2] in _near(leaf, _leaves(valid))]
    if not close:
        return f"unknown key `{key}`; valid keys here: {', '.join(siblings)}"
    top_level = "." in key and "." not in close[0]
    where = " (top-level keys go before the first [table])" if top_level else ""
    return f"unknown key `{key}`; did you mean `{close[0]}`{where}?"


def _near(word: str, candidates: list[str]) -> list[str]:
    close = closest(word, candidates)
    return [close] if close else []


def _leaves(keys: list[str]) -> list[str]:
    return [key.rpartition(".")[2] for key in keys]


def _show(raw: Any) -> str:
    """A value as the user wrote it, with its TOML type (``true (a boolean)``)."""
    kinds = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
    }
    kind = kinds.get(type(raw), "a table" if isinstance(raw, dict) else "a date or time")
    try:
        text = toml_value(raw)
    except TypeError:  # tables, arrays of tables, dates: the type is what matters
        text = "{...}" if isinstance(raw, dict) else str(raw)
    return f"{text} ({kind})"
