"""Settings as frozen dataclasses that check themselves, and that pydantic validates unchanged.

The session's settings (alarms, timeline, BP schedule, baseline, discharge, checklists) are
what the monitor runs on, in the daemon and in `sessiond replay`; they must load without
pydantic, whose import alone takes most of the 0.1 s replay may take to start. So they are
plain dataclasses (`@settings` on a `Checked` subclass: frozen, keyword-only), declared once:

- `Annotated[float, Constraint(ge=0, le=120)]`: a number's range, a string's pattern or
  length (the keywords of pydantic's `Field`);
- `Annotated[T, FieldCheck(check)]`: a check of one field against the fields before it
  (pydantic's `field_validator`);
- `Checked.problems()`: checks across fields, run once every field is good (pydantic's
  `model_validator(mode="after")`).

Built in code, a settings object converts ints to floats and lists to tuples as pydantic
would, and raises `KeyProblems` for what is wrong. Read from a configuration file, pydantic
validates the same dataclasses with the same declarations, strictly and refusing unknown keys
(`STRICT_CONFIG`), so every problem is one line naming its key, as for pydantic's own models.
Pydantic is imported only then: the hooks below import it when pydantic calls them.
"""

from __future__ import annotations

import math
import operator
import re
import types
from dataclasses import FrozenInstanceError, dataclass, fields
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    ClassVar,
    TypeVar,
    Union,
    dataclass_transform,
    get_args,
    get_origin,
    get_type_hints,
)

from sessiond.errors import KeyProblems

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from pydantic import GetCoreSchemaHandler
    from pydantic_core import CoreSchema

#: Pydantic's configuration of the dataclasses: what `sessiond.settings.Strict` is for its
#: models (no unknown key, no NaN or infinity). Frozen they are already.
STRICT_CONFIG: dict[str, object] = {"extra": "forbid", "allow_inf_nan": False}

#: (dotted key, what is wrong with it)
Problems = list[tuple[str, str]]

_C = TypeVar("_C", bound="Checked")

_NUMBER_CHECKS: tuple[tuple[str, Callable[[Any, Any], bool], str], ...] = (
    ("gt", operator.gt, "greater than"),
    ("ge", operator.ge, "greater than or equal to"),
    ("lt", operator.lt, "less than"),
    ("le", operator.le, "less than or equal to"),
)


class Constraint:
    """`Annotated` metadata: pydantic's `Field` constraints, checked without pydantic too."""

    __slots__ = ("_kwargs", "_longest", "_numbers", "_pattern", "_shortest")

    def __init__(
        self,
        *,
        ge: float | None = None,
        gt: float | None = None,
        le: float | None = None,
        lt: float | None = None,
        pattern: str | None = None,
        min_length: int | None = None,
        max_length: int | None = None,
    ) -> None:
        numbers = {"ge": ge, "gt": gt, "le": le, "lt": lt}
        self._numbers = {key: value for key, value in numbers.items() if value is not None}
        self._pattern, self._shortest, self._longest = pattern, min_length, max_length
        given = {"pattern": pattern, "min_length": min_length, "max_length": max_length}
        #: Pydantic's `Field` keywords.
        self._kwargs: dict[str, Any] = self._numbers | {
            key: value for key, value in given.items() if value is not None
        }

    def problem(self, value: object) -> str | None:
        """What is wrong with `value`, in pydantic's words; None when nothing is."""
        if isinstance(value, str):
            return self._text_problem(value)
        if isinstance(value, int | float):
            return next(
                (
                    f"Input should be {words} {self._numbers[key]}"
                    for key, holds, words in _NUMBER_CHECKS
                    if key in self._numbers and not holds(value, self._numbers[key])
                ),
                None,
            )
        return None

    def _text_problem(self, value: str) -> str | None:
        if self._pattern is not None and re.search(self._pattern, value) is None:
            return f"String should match pattern '{self._pattern}'"
        shortest, longest = self._shortest, self._longest
        if shortest is not None and len(value) < shortest:
            return f"String should have at least {shortest} character{'s' * (shortest != 1)}"
        if longest is not None and len(value) > longest:
            return f"String should have at most {longest} character{'s' * (longest != 1)}"
        return None

    def __get_pydantic_core_schema__(
        self, source: type[object], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        from pydantic import Field  # noqa: PLC0415  (only when a file is validated)

        return handler(Annotated[source, Field(**self._kwargs)])


class FieldCheck:
    """`Annotated` metadata: `check(value, earlier)` raises `ValueError` (or `KeyProblems`)
    when the field is wrong; `earlier` holds the good fields declared before it."""

    __slots__ = ("check",)

    def __init__(self, check: Callable[[Any, Mapping[str, Any]], None]) -> None:
        self.check = check

    def __get_pydantic_core_schema__(
        self, source: type[object], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        from pydantic_core import core_schema  # noqa: PLC0415  (only when a file is validated)

        def after(value: object, info: core_schema.ValidationInfo) -> object:
            self.check(value, info.data)
            return value

        return core_schema.with_info_after_validator_function(after, handler(source))


@dataclass_transform(kw_only_default=True, frozen_default=True)
def settings(cls: type[_C]) -> type[_C]:
    """`@dataclass(frozen=True, kw_only=True)` for a `Checked` class.

    Equality, hash, repr and frozenness are a frozen dataclass's, written once in `Checked`
    rather than generated (and compiled) for every class at start-up.
    """
    return dataclass(kw_only=True, repr=False, eq=False)(cls)


class Checked:
    """Base of the settings classes, each declared with `@settings`."""

    __pydantic_config__: ClassVar[dict[str, object]] = STRICT_CONFIG

    def __post_init__(self) -> None:
        found = _field_problems(self)
        if not found:
            found = self.problems()
        if found:
            raise KeyProblems(found)

    def problems(self) -> Problems:
        """(key, what is wrong) across fields; called once every field is good."""
        return []

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name, _ in _fields(type(self)))

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Checked)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name, _ in _fields(type(self)))
        return f"{type(self).__qualname__}({shown})"

    def __setattr__(self, name: str, value: object) -> None:
        # Each field is set once, by `__init__`; nothing else ever is.
        if name in self.__dict__ or name not in _names(type(self)):
            msg = f"cannot assign to field {name!r}"
            raise FrozenInstanceError(msg)
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        msg = f"cannot delete field {name!r}"
        raise FrozenInstanceError(msg)


_FIELDS: dict[type, tuple[tuple[str, object], ...]] = {}
_NAMES: dict[type, frozenset[str]] = {}
_HINTS: dict[type, dict[str, object]] = {}


def _fields(cls: type) -> tuple[tuple[str, object], ...]:
    """The (name, default) of each field of a settings class, in order."""
    found = _FIELDS.get(cls)
    if found is None:
        found = _FIELDS[cls] = tuple((f.name, f.default) for f in fields(cls))
    return found


def _names(cls: type) -> frozenset[str]:
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = frozenset(name for name, _ in _fields(cls))
    return names


def _hints(cls: type) -> dict[str, object]:
    """The type of each field of a settings class (resolved once, when first needed)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = get_type_hints(cls, include_extras=True)
    return hints


def _field_problems(obj: Checked) -> Problems:
    """Converts ints to floats and lists to tuples in place, then checks every field.

    A field's default (the shipped value, which the tests validate with pydantic) needs no
    check: the defaults built at import resolve no type hints.
    """
    found: Problems = []
    earlier: dict[str, object] = {}
    for name, default in _fields(type(obj)):
        value = getattr(obj, name)
        if value is default or (value.__class__ is default.__class__ and value == default):
            earlier[name] = value
            continue
        hint = _hints(type(obj))[name]
        settled = _settle(hint, value)
        if settled is not value:
            object.__setattr__(obj, name, settled)
        problems = _check(hint, settled, name, earlier)
        if not problems:
            earlier[name] = settled
        found += problems
    return found


def _inner(hint: object, value: object) -> object | None:
    """The type that `value` has to be for `hint`: the one of `X | None` (None for None),
    `hint` itself for any other type."""
    if get_origin(hint) not in (Union, types.UnionType):
        return hint
    if value is None:
        return None
    options: list[object] = [option for option in get_args(hint) if option is not type(None)]
    (inner,) = options
    return inner


def _items(hint: object) -> object | None:
    """The type of the items of `tuple[X, ...]`; None for any other type."""
    args: tuple[object, ...] = get_args(hint)
    if get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis:  # noqa: PLR2004
        return args[0]
    return None


def _settle(hint: object, value: object) -> object:
    """`value` as pydantic converts it for `hint`: an int for a float, a list for a tuple."""
    if get_origin(hint) is Annotated:
        return _settle(get_args(hint)[0], value)
    hint = _inner(hint, value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    item = _items(hint)
    if item is not None and isinstance(value, list | tuple):
        items = tuple(_settle(item, v) for v in value)
        return value if isinstance(value, tuple) and items == value else items
    return value


def _check(hint: object, value: object, key: str, earlier: Mapping[str, object]) -> Problems:
    """What is wrong with `value` at `key` for `hint`'s constraints and checks."""
    if get_origin(hint) is Annotated:
        inner, *metadata = get_args(hint)
        found = _check(inner, value, key, earlier)
        for meta in metadata:
            if not found:
                found = _check_meta(meta, value, key, earlier)
        return found
    hint = _inner(hint, value)
    if isinstance(value, float) and not math.isfinite(value):
        return [(key, "Input should be a finite number")]
    item = _items(hint)
    if item is not None and isinstance(value, tuple):
        return [p for i, v in enumerate(value) for p in _check(item, v, f"{key}.{i}", {})]
    return []


def _check_meta(meta: object, value: object, key: str, earlier: Mapping[str, object]) -> Problems:
    if isinstance(meta, Constraint):
        problem = meta.problem(value)
        return [] if problem is None else [(key, problem)]
    if isinstance(meta, FieldCheck):
        try:
            meta.check(value, earlier)
        except KeyProblems as exc:
            return [(f"{key}.{inner}", problem) for inner, problem in exc.problems]
        except ValueError as exc:
            return [(key, str(exc))]
    return []
