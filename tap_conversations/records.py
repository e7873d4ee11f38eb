"""Checking and normalising records against their stream's schema, once, before the SDK.

`RecordChecker` is built once per stream and replaces the SDK's per-record type conformance
(measured at about half of the tap's CPU on 50,000 onQ records): values come straight from
JSON, so checking their JSON types is all that is needed. At every level the schema describes
(nested objects, array items) it drops fields the API added (reported once per stream and
path), fails with one line on a value of the wrong type or a record without its primary key,
and normalises `date-time` values to one UTC layout. Fields the catalog deselected are dropped
later, when the record is written (`sdk_compat.CompatStream`), so child streams still see them.

The checks follow the schema, never the data, so they recurse only as deep as the schema does
(three levels here): a hostile value nested a thousand levels deep is one wrong-type error.

Two paths, one outcome. The hot path, `Shape.conform` (under half the cost), normalises a
record in place in one pass and gives up, raising, at the first thing it does not settle (an
unknown field, a wrong type, a bad timestamp); the full checks (`RecordChecker._check_object`)
then drop and report, or fail with the exact message, in their own order. What the hot path
did before it gave up is harmless: normalising a timestamp twice gives the same text.
"""

from __future__ import annotations

import logging
import reprlib
import typing as t
from dataclasses import dataclass

from msgspec import UNSET, to_builtins

from tap_conversations.errors import ProviderError, prefix
from tap_conversations.record_types import TypedRecord, record_type
from tap_conversations.timestamps import MICROS_UTC, SECONDS_Z, parse_iso

# Re-exported (PEP 484's explicit form): other modules import it from here.
from tap_conversations.timestamps import utc_timestamp as utc_timestamp  # noqa: PLC0414

if t.TYPE_CHECKING:
    from singer_sdk.singerlib import SelectionMask


_JSON_TYPES: dict[str, tuple[type, ...]] = {  # bool is not an integer: types, not isinstance
    **{"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,)},
    **{"array": (list,), "object": (dict,), "null": (type(None),)},
}

_short = reprlib.Repr()  # short reprs, however long or deep the value
_short.maxlevel, _short.maxstring, _short.maxother, _short.maxlist, _short.maxdict = 2, 60, 60, 4, 4


def python_types(prop: dict[str, t.Any]) -> frozenset[type]:
    """The Python types a decoded JSON value may have for a schema property."""
    declared = prop.get("type", [])
    names = [declared] if isinstance(declared, str) else declared
    return frozenset(kind for name in names for kind in _JSON_TYPES.get(name, ()))


class Nonconforming(Exception):
    """A value the hot path does not settle; the full checks decide what it is."""


_NONE: frozenset[type] = frozenset({type(None)})


class Rule:
    """What one schema property allows: JSON types, a timestamp, an object shape, items."""

    def __init__(self, prop: dict[str, t.Any], path: str) -> None:
        self.types = python_types(prop)
        self.timestamp = prop.get("format") == "date-time"
        self.shape = Shape(prop["properties"], f"{path}.") if "properties" in prop else None
        items = prop.get("items")
        self.items = Rule(items, f"{path}[]") if isinstance(items, dict) else None
        self.deep = self.shape is not None or self.items is not None  # checked below its level
        # For the hot path: the types a value keeps as it is. A timestamp keeps only `None`
        # (its text is normalised); an object or array with declared contents is gone into.
        self.stamp = self.timestamp and str in self.types  # text to normalise
        self.objects = self.shape if dict in self.types and not self.timestamp else None
        self.arrays = self.items if list in self.types and not self.timestamp else None
        gone_into = {kind for kind, into in ((dict, self.objects), (list, self.arrays)) if into}
        self.settled_types = self.types & _NONE if self.timestamp else self.types - gone_into

    def conformed(self, value: t.Any) -> t.Any:
        """`value` normalised, for a value its type alone does not settle.

        Raises `Nonconforming` (or the timestamp's `ValueError`) where the full checks must
        look; a shape's `KeyError` is an unknown field.
        """
        if self.stamp and type(value) is str:
            return utc_timestamp(value)
        if type(value) is dict and self.objects is not None:
            self.objects.conform(value)
            return value
        if type(value) is list and self.arrays is not None:
            items = self.arrays
            settled = items.settled_types
            for index, item in enumerate(value):
                if type(item) not in settled:
                    value[index] = items.conformed(item)
            return value
        raise Nonconforming

    def stamp_times(self, value: t.Any) -> None:
        """Normalise the date-times inside `value`, whose types are already checked."""
        if type(value) is dict and self.objects is not None:
            self.objects.stamp_times(value)
        elif type(value) is list and self.arrays is not None:
            items = self.arrays
            for index, item in enumerate(value):
                if items.stamp and type(item) is str:
                    value[index] = utc_timestamp(item)
                elif items.deep:
                    items.stamp_times(item)


class Shape:
    """One JSON object of a schema: its properties' rules, worked out once."""

    def __init__(self, properties: dict[str, t.Any], path: str = "") -> None:
        self.path = path  # "" at the top, "messages[]." for the objects in `messages`
        self.rules = {name: Rule(prop, f"{path}{name}") for name, prop in properties.items()}
        self.field_types = {name: rule.types for name, rule in self.rules.items()}
        self.timestamp_fields = tuple(name for name, rule in self.rules.items() if rule.timestamp)
        self.deep_fields = tuple(name for name, rule in self.rules.items() if rule.deep)
        self.settled_types = {name: rule.settled_types for name, rule in self.rules.items()}
        self.stamp_fields = frozenset(name for name, rule in self.rules.items() if rule.stamp)

    def conform(self, obj: dict[str, t.Any]) -> None:
        """The hot path: normalise `obj` in place, or raise where the full checks must look.

        Raises `KeyError` (an unknown field), `Nonconforming`, or a timestamp's `ValueError`,
        `TypeError` or `OverflowError`.
        """
        settled, stamps = self.settled_types, self.stamp_fields
        for name, value in obj.items():
            if type(value) not in settled[name]:
                if name in stamps:  # `utc_timestamp`'s common case inline (a call: +20%)
                    parse_iso(value)
                    fast = value[4::3] == SECONDS_Z
                    obj[name] = value[:19] + MICROS_UTC if fast else utc_timestamp(value)
                else:
                    obj[name] = self.rules[name].conformed(value)

    def stamp_times(self, obj: dict[str, t.Any]) -> None:
        """Normalise the date-times of `obj`, whose types are already checked (a record of a
        typed page, `record_types`). Raises as `conform` does for a bad timestamp."""
        for name in self.stamp_fields:
            value = obj.get(name)
            if type(value) is str:
                obj[name] = utc_timestamp(value)
        for name in self.deep_fields:
            if (value := obj.get(name)) is not None:
                self.rules[name].stamp_times(value)


@dataclass(frozen=True)
class Selection:
    """What the catalog deselected in one stream, worked out once per run."""

    deselected: frozenset[str]  # top-level properties
    nested: bool  # whether any nested property is deselected

    @classmethod
    def from_mask(cls, schema: dict[str, t.Any], mask: SelectionMask) -> Selection:
        deselected = {
            name for name in schema["properties"] if not mask.get(("properties", name), True)
        }
        nested = any(len(crumb) > 2 and not selected for crumb, selected in mask.items())
        return cls(frozenset(deselected), nested)


class RecordStream(t.Protocol):
    """What a `RecordChecker` needs of its stream."""

    provider_label: t.ClassVar[str]
    #: Top-level fields whose values become text before the checks (opaque ids).
    text_fields: tuple[str, ...]

    @property
    def name(self) -> str: ...

    @property
    def primary_keys(self) -> t.Sequence[str] | None: ...

    @property
    def schema(self) -> dict[str, t.Any]: ...

    @property
    def logger(self) -> logging.Logger: ...

    @property
    def mask(self) -> SelectionMask: ...


class RecordChecker:
    """Schema checks and timestamp normalisation for one stream's records."""

    def __init__(self, stream: RecordStream, *, hot_path: bool = True) -> None:
        self.stream = stream
        self.shape = Shape(stream.schema["properties"])
        self.text_fields = tuple(stream.text_fields)
        # What a typed page decodes its records to (`record_types`); None: pages are untyped.
        self.record_type = record_type(self.shape, self.text_fields) if hot_path else None
        self.hot_path = hot_path  # False: every record through the full checks (tests)
        self._unknown_reported: set[str] = set()
        self._selection: Selection | None = None
        self._keys: tuple[str, ...] | None = None
        self._use_hot_path = hot_path
        self._in_place: InPlace | None = None
        self.full_checks = 0  # records the hot path left to the full checks

    @property
    def selection(self) -> Selection:
        """What the catalog deselected, read from the stream's mask on first use."""
        if self._selection is None:
            self._selection = Selection.from_mask(self.stream.schema, self.stream.mask)
        return self._selection

    @property
    def keys(self) -> tuple[str, ...]:
        """The stream's primary key (the catalog may change it), read on first use."""
        if self._keys is None:
            self._keys = tuple(self.stream.primary_keys or ())
            # A failure names the record by its key as the full checks leave it; were the key
            # a timestamp, the hot path could have normalised it before giving up.
            timestamp_key = set(self._keys) & set(self.shape.timestamp_fields)
            self._use_hot_path = self.hot_path and not timestamp_key
            typed = self.record_type if self._use_hot_path else None
            self._in_place = InPlace.plan(typed, self.shape, self.text_fields, self._keys)
        return self._keys

    def reset(self) -> None:
        """Read the selection and keys again (a new run may bring a new catalog)."""
        self._selection = None
        self._keys = None

    def check(self, record: dict[str, t.Any] | TypedRecord) -> dict[str, t.Any] | TypedRecord:
        """`record` with unknown fields dropped, types checked, times in UTC, its key present.

        A `TypedRecord` (from a typed page) has its types checked already. With no object or
        array the schema describes inside (onQ's), it stays one, checked in place (`InPlace`):
        msgspec encodes it as the dict it stands for, and `get` reads it. Any other becomes a
        dict, and only its date-times are left to normalise.
        """
        row: dict[str, t.Any]
        if isinstance(record, TypedRecord):
            settled = self._settle_typed(record)
            if isinstance(settled, TypedRecord):
                return settled
            row, typed = settled, True
        else:
            row, typed = record, False
        if type(row) is not dict:
            msg = f"{prefix(self.stream)}: a record is {self._describe(row)}, not a JSON object"
            raise ProviderError(msg)
        for name in self.text_fields:
            value = row.get(name)
            if value is not None:
                row[name] = str(value)
        keys = self._keys if self._keys is not None else self.keys
        for key in keys:
            if row.get(key) is None:
                self.fail(row, key, "is missing; it is the primary key, so the record cannot load")
        if self._use_hot_path:
            try:
                (self.shape.stamp_times if typed else self.shape.conform)(row)
            except (Nonconforming, KeyError, TypeError, ValueError, OverflowError):
                pass  # the full checks below say what it is
            else:
                return row
        self.full_checks += 1
        self._check_object(row, self.shape, row, "")
        return row

    def _settle_typed(self, record: TypedRecord) -> TypedRecord | dict[str, t.Any]:
        """A typed record settled in place (`InPlace`), or made a dict for the rest of `check`;
        either way without the fields the schema does not name."""
        for attribute in record.dropped:  # UNSET is left out of the JSON and of the dict
            setattr(record, attribute, UNSET)
        if self._keys is None:
            self.keys  # noqa: B018 (worked out on first use, with `_in_place`)
        if (in_place := self._in_place) is not None and in_place.check(record):
            return record
        return t.cast("dict[str, t.Any]", to_builtins(record))

    def _check_object(
        self, obj: dict[str, t.Any], shape: Shape, row: dict[str, t.Any], where: str
    ) -> None:
        field_types = shape.field_types
        if unknown := obj.keys() - field_types.keys():
            self._report_unknown(shape.path, unknown)
            for name in unknown:
                del obj[name]
        for name, value in obj.items():
            if type(value) not in field_types[name]:
                self._wrong_type(row, f"{where}{name}", value, field_types[name])
        for name in shape.timestamp_fields:
            value = obj.get(name)
            if value is not None:
                obj[name] = self._timestamp(row, f"{where}{name}", value)
        for name in shape.deep_fields:
            value = obj.get(name)
            if value is not None:
                self._check_deep(value, shape.rules[name], row, f"{where}{name}")

    def _check_deep(self, value: t.Any, rule: Rule, row: dict[str, t.Any], where: str) -> None:
        """Check below a value whose own type is already checked."""
        if rule.shape is not None and type(value) is dict:
            self._check_object(value, rule.shape, row, f"{where}.")
        elif rule.items is not None and type(value) is list:
            items = rule.items
            for index, item in enumerate(value):
                if type(item) not in items.types:
                    self._wrong_type(row, f"{where}[{index}]", item, items.types)
                if item is None:
                    continue
                if items.timestamp:
                    value[index] = self._timestamp(row, f"{where}[{index}]", item)
                elif items.deep:
                    self._check_deep(item, items, row, f"{where}[{index}]")

    def _timestamp(self, row: dict[str, t.Any], field: str, value: t.Any) -> str:
        try:
            return utc_timestamp(value)
        except (TypeError, ValueError):
            self.fail(row, field, f"is not an ISO-8601 timestamp: {self._describe(value)}")
        except OverflowError:
            problem = f"is out of range once converted to UTC (years 1-9999): {_short.repr(value)}"
            self.fail(row, field, problem)

    def _wrong_type(
        self, row: dict[str, t.Any], field: str, value: t.Any, allowed: frozenset[type]
    ) -> t.NoReturn:
        expected = "/".join(sorted(kind.__name__ for kind in allowed))
        self.fail(row, field, f"is {self._describe(value)}, expected {expected}")

    @staticmethod
    def _describe(value: t.Any) -> str:
        """`int 42`: type and a short repr that stays short however deep the value nests."""
        return f"{type(value).__name__} {_short.repr(value)}"

    def fail(self, row: dict[str, t.Any], field: str, problem: str) -> t.NoReturn:
        key = ", ".join(f"{k}={_short.repr(row.get(k))}" for k in self.keys) or "(no key)"
        msg = f"{prefix(self.stream)}: field '{field}' of record {key} {problem}"
        raise ProviderError(msg)

    def _report_unknown(self, path: str, unknown: set[str]) -> None:
        typed = self.record_type
        if not path and typed is not None and not unknown <= typed.attributes.keys():
            # The next pages carrying these fields decode typed: the new type takes and drops
            # them (`record_types.record_type`); `_in_place` follows it. (Checked against the
            # type itself: two detail threads reporting at once converge on one with both.)
            dropped = (typed.attributes.keys() - self.shape.rules.keys()) | unknown
            self.record_type = record_type(self.shape, self.text_fields, dropped)
            self._keys = None
        if new := {f"{path}{name}" for name in unknown} - self._unknown_reported:
            self._unknown_reported |= new
            self.stream.logger.warning(
                "%s: the API sent fields not in the schema, dropped: %s",
                prefix(self.stream),
                ", ".join(sorted(new)),
            )


@dataclass(frozen=True)
class InPlace:
    """Where a flat typed record's ids, key and date-times are: `RecordChecker.check` settles
    such a record on the record itself, about 1 µs cheaper than making it a dict first."""

    text: tuple[str, ...]  # attributes of `text_fields`
    keys: tuple[str, ...]  # attributes of the primary key
    stamps: tuple[str, ...]  # attributes of date-times

    @classmethod
    def plan(
        cls,
        record_type: type[TypedRecord] | None,
        shape: Shape,
        text_fields: tuple[str, ...],
        keys: tuple[str, ...],
    ) -> InPlace | None:
        """None unless records can be checked in place: typed, and flat (nothing below the
        top level to normalise)."""
        if record_type is None or shape.deep_fields:
            return None
        where = record_type.attributes
        if not set(keys) <= where.keys():
            return None
        return cls(
            tuple(map(where.__getitem__, text_fields)),
            tuple(map(where.__getitem__, keys)),
            # In the schema's order: 0.25 µs a record cheaper than a set's, measured
            tuple(where[name] for name in shape.timestamp_fields if name in shape.stamp_fields),
        )

    def check(self, record: TypedRecord) -> bool:
        """Settle `record` in place: ids made text, key present, date-times normalised.
        False where the dict path must look (a missing key, a bad date-time): it says what
        it is, and normalising a date-time twice gives the same text."""
        for attribute in self.text:
            value = getattr(record, attribute)
            if value is not None and value is not UNSET:
                setattr(record, attribute, str(value))
        for attribute in self.keys:
            value = getattr(record, attribute)
            if value is None or value is UNSET:
                return False
        try:
            for attribute in self.stamps:
                value = getattr(record, attribute)
                if type(value) is str:  # `utc_timestamp`'s common case inline, as in `conform`
                    parse_iso(value)
                    fast = value[4::3] == SECONDS_Z
                    value = value[:19] + MICROS_UTC if fast else utc_timestamp(value)
                    setattr(record, attribute, value)
        except (TypeError, ValueError, OverflowError):
            return False
        return True
