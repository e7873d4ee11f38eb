"""Checking and normalising records against their stream's schema, once, before the SDK.

`RecordChecker` is built once per stream and stands in for the SDK's per-record type
conformance: values come straight from JSON, so checking their JSON types is all that is needed.
For each record, in this order:

1. it must be a JSON object; the fields listed in `text_fields` (opaque ids) become text;
2. its primary key must be present;
3. at every level the schema describes (the record, nested objects, array items), fields the
   schema does not describe go the way the `schema_evolution` setting says (`_unknown`), every
   value must have one of its JSON types, and `date-time` values are normalised to one UTC
   layout (`utc_timestamp`).

`schema_evolution` (docs/schema-evolution.md): `evolve` keeps an undescribed field and grows
the stream's schema with it (its JSON type as seen, nullable; `version` counts the growths and
`grown` writes them into a schema, for the SCHEMA message written before the next RECORD); a
field evolution added whose type then changes widens to any JSON value (`{}`). `freeze` ends
the provider; `discard` drops the field and reports it once per stream and path.

Every failure is one line naming provider, stream, field, record and what is wrong. The checks
follow the schema, never the data, so they go only as deep as the schema does: a hostile value
nested a thousand levels deep is one wrong-type error. Fields the catalog deselected are dropped
later, when the SDK writes the record, so child streams still see them.
"""

from __future__ import annotations

import copy
import datetime
import logging
import reprlib
import threading
import typing as t

from tap_conversations.errors import ProviderError, prefix

# Timestamps ------------------------------------------------------------------------------

_SECONDS_Z = "--T::Z"  # value[4::3] of `YYYY-MM-DDTHH:MM:SSZ`, the APIs' usual form
_SECONDS = "--T::"  # value[4:17:3] of `YYYY-MM-DDTHH:MM:SS...`, however the rest goes


def utc_timestamp(value: str) -> str:
    """Normalise an ISO-8601 timestamp to UTC with a fixed layout.

    The APIs mix offsets (`+01:00`, `Z`) and precisions. One layout,
    `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`, makes string order equal time order, which is what the
    SDK relies on when it compares bookmark values. The instant itself is unchanged; a value
    without an offset is taken as UTC, digits past the microsecond are dropped.
    Raises `ValueError` for text that is not ISO-8601, `TypeError` for a value that is not
    text, and `OverflowError` for an instant outside years 1-9999 once in UTC
    (`9999-12-31T23:59:59-01:00`).
    """
    parsed = datetime.datetime.fromisoformat(value)  # validates, whatever the path below
    # Already UTC with its date and time in the extended layout (the common case): keep the
    # text up to the seconds instead of formatting a datetime. Parsed, those separators leave
    # only digits around them (no week date, no basic layout).
    if value[4::3] == _SECONDS_Z:
        return value[:19] + ".000000+00:00"
    if parsed.tzinfo is datetime.UTC and value[4:17:3] == _SECONDS:
        return f"{value[:19]}.{parsed.microsecond:06d}+00:00"
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.astimezone(datetime.UTC).isoformat(timespec="microseconds")


# What the schema says ------------------------------------------------------------------------

_JSON_TYPES: dict[str, tuple[type, ...]] = {  # bool is not an integer: types, not isinstance
    **{"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,)},
    **{"array": (list,), "object": (dict,), "null": (type(None),)},
}


#: A new field's JSON type, by the Python type its value decodes to. An integer is a "number":
#: a field first seen as 3 and later as 0.5 then needs no widening (target-postgres 0.8.1
#: keeps a column's first type and would round 0.5 into a bigint column).
_TYPE_NAMES: dict[type, str] = {
    **{str: "string", bool: "boolean", int: "number", float: "number"},
    **{list: "array", dict: "object"},
}


class Rule:
    """What the schema says of one value: its JSON types, whether it is a date-time, and the
    fields of an object or the items of an array, when it describes them."""

    def __init__(
        self,
        prop: dict[str, t.Any],
        path: str,
        crumbs: tuple[str, ...] = (),
        *,
        evolved: bool = False,
    ) -> None:
        #: Where `prop` sits in the stream's schema: ("properties", "data", "items").
        self.crumbs = crumbs
        #: Added by `schema_evolution: evolve` (its type may widen), not the schema's own.
        self.evolved = evolved
        self.prop = prop
        declared = prop.get("type", list(_JSON_TYPES))  # no type: any JSON value (`{}`)
        names = [declared] if isinstance(declared, str) else declared
        #: The Python types a decoded JSON value may have (`type(value) in types`).
        self.types = frozenset(kind for name in names for kind in _JSON_TYPES.get(name, ()))
        self.expected = "/".join(sorted(kind.__name__ for kind in self.types))
        self.timestamp = prop.get("format") == "date-time"
        #: Where an unknown field of this object is reported: "owner.", "messages[]."
        self.path = f"{path}." if path else ""
        properties = prop.get("properties")
        #: Replaced, never changed in place: another thread may be reading the old one.
        self.fields = (
            {
                name: Rule(sub, f"{self.path}{name}", (*crumbs, "properties", name))
                for name, sub in properties.items()
            }
            if isinstance(properties, dict)
            else None
        )
        items = prop.get("items")
        self.items = (
            Rule(items, f"{path}[]", (*crumbs, "items")) if isinstance(items, dict) else None
        )
        #: Whether a value has more to do once its type is checked.
        self.further = self.timestamp or self.fields is not None or self.items is not None


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


_short = reprlib.Repr()  # short reprs, however long or deep the value
_short.maxlevel, _short.maxstring, _short.maxother, _short.maxlist, _short.maxdict = 2, 60, 60, 4, 4


def _describe(value: t.Any) -> str:
    """`int 42`: type and a short repr that stays short however deep the value nests."""
    return f"{type(value).__name__} {_short.repr(value)}"


# The checks ----------------------------------------------------------------------------------


class RecordChecker:
    """Schema checks and timestamp normalisation for one stream's records."""

    def __init__(self, stream: RecordStream, mode: str = "evolve") -> None:
        self.stream = stream
        self.root = Rule({"type": "object", "properties": stream.schema["properties"]}, "")
        self.text_fields = tuple(stream.text_fields)
        #: The `schema_evolution` setting: evolve, freeze or discard.
        self.mode = mode
        #: How many times `evolve` grew the schema (0: the stream's schema as written).
        self.version = 0
        #: What `evolve` added or widened: where in the schema -> its schema.
        self.added: dict[tuple[str, ...], dict[str, t.Any]] = {}
        self._evolving = threading.Lock()  # detail records are checked on worker threads
        self._unknown_reported: set[str] = set()
        self._keys: tuple[str, ...] | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        """The stream's primary key (the catalog may change it), read on first use."""
        if self._keys is None:
            self._keys = tuple(self.stream.primary_keys or ())
        return self._keys

    def reset(self) -> None:
        """Read the keys again (a new run may bring a new catalog)."""
        self._keys = None

    def check(self, record: dict[str, t.Any]) -> dict[str, t.Any]:
        """`record` (changed in place) with ids as text, its key present, unknown fields
        dropped, types checked and date-times in UTC; or a `ProviderError` saying what is
        wrong."""
        if type(record) is not dict:
            msg = f"{prefix(self.stream)}: a record is {_describe(record)}, not a JSON object"
            raise ProviderError(msg)
        for name in self.text_fields:
            value = record.get(name)
            if value is not None:
                record[name] = str(value)
        for key in self.keys:
            if record.get(key) is None:
                self.fail(
                    record, key, "is missing; it is the primary key, so the record cannot load"
                )
        self._check_object(record, self.root, record, "")
        return record

    def _check_object(
        self, obj: dict[str, t.Any], rule: Rule, record: dict[str, t.Any], where: str
    ) -> None:
        """Check an object the schema describes: `where` is its place in `record` ("" for the
        record, "messages[0]." for an item of `messages`)."""
        fields = t.cast("dict[str, Rule]", rule.fields)
        if unknown := obj.keys() - fields.keys():
            fields = self._unknown(obj, unknown, rule, record, where)
        for name, value in obj.items():  # every type first, then what lies further
            if type(value) not in fields[name].types:
                if not fields[name].evolved:
                    self._wrong_type(record, f"{where}{name}", value, fields[name])
                fields = self._widen(rule, name, value)
        for name, field in fields.items():
            if field.further and (value := obj.get(name)) is not None:
                obj[name] = self._settle(value, field, record, f"{where}{name}")

    def _settle(self, value: t.Any, rule: Rule, record: dict[str, t.Any], where: str) -> t.Any:
        """`value`, whose type is checked and which is not null, normalised if a date-time,
        with what the schema describes inside it checked."""
        if rule.timestamp:
            return self._timestamp(record, where, value)
        if rule.fields is not None and type(value) is dict:
            self._check_object(value, rule, record, f"{where}.")
        elif rule.items is not None and type(value) is list:
            items = rule.items
            for index, item in enumerate(value):
                if type(item) not in items.types:
                    self._wrong_type(record, f"{where}[{index}]", item, items)
                if items.further and item is not None:
                    value[index] = self._settle(item, items, record, f"{where}[{index}]")
        return value

    def _unknown(
        self,
        obj: dict[str, t.Any],
        unknown: set[str],
        rule: Rule,
        record: dict[str, t.Any],
        where: str,
    ) -> dict[str, Rule]:
        """Deal with the fields of `obj` that `rule` does not describe, as `mode` says; the
        fields `rule` describes now."""
        if self.mode == "freeze":
            name = min(unknown)
            self.fail(
                record,
                f"{where}{name}",
                "is not in the schema and schema_evolution is freeze "
                "(set schema_evolution to evolve to load it, or discard to drop it)",
            )
        if self.mode == "evolve":
            for name in sorted(unknown):
                if obj[name] is None:  # a null says nothing of the type: the column waits
                    del obj[name]
                else:
                    self._widen(rule, name, obj[name])
        else:
            self._drop_unknown(obj, unknown, rule.path)
        return t.cast("dict[str, Rule]", rule.fields)

    def _widen(self, rule: Rule, name: str, value: t.Any) -> dict[str, Rule]:
        """Describe field `name` of the objects `rule` describes, or widen what evolution
        said of it, so that `value`'s type is one of its types; log one line."""
        kind = _TYPE_NAMES[type(value)]
        with self._evolving:
            fields = t.cast("dict[str, Rule]", rule.fields)
            old = fields.get(name)
            if old is not None and type(value) in old.types:  # another thread got there first
                return fields
            crumbs = (*rule.crumbs, "properties", name)
            if old is None:
                prop: dict[str, t.Any] = {"type": [kind, "null"]}
                line = "%s: new field '%s' (%s) kept"
            else:
                prop = {}  # any JSON: see `schema_evolution` in docs/schema-evolution.md
                line = "%s: field '%s' is now also %s; its schema widened to any JSON value"
            rule.fields = {**fields, name: Rule(prop, f"{rule.path}{name}", crumbs, evolved=True)}
            self.added = {**self.added, crumbs: prop}
            self.version += 1
        self.stream.logger.info(line, prefix(self.stream), f"{rule.path}{name}", kind)
        return rule.fields

    def grown(self, schema: dict[str, t.Any]) -> dict[str, t.Any]:
        """A copy of `schema` (the stream's, or what a stream map made of it) with what
        `evolve` added; a place a stream map removed stays removed."""
        if not self.added:
            return schema
        schema = copy.deepcopy(schema)
        for crumbs, prop in self.added.items():
            node: t.Any = schema
            for crumb in crumbs[:-1]:
                node = node.get(crumb) if isinstance(node, dict) else None
                if node is None:
                    break
            if isinstance(node, dict):
                node[crumbs[-1]] = prop
        return schema

    def _drop_unknown(self, obj: dict[str, t.Any], unknown: set[str], path: str) -> None:
        """Drop the fields the schema does not describe; report each path once per stream."""
        for name in unknown:
            del obj[name]
        if new := {f"{path}{name}" for name in unknown} - self._unknown_reported:
            self._unknown_reported |= new
            self.stream.logger.warning(
                "%s: the API sent fields not in the schema, dropped: %s",
                prefix(self.stream),
                ", ".join(sorted(new)),
            )

    def _timestamp(self, record: dict[str, t.Any], field: str, value: t.Any) -> str:
        try:
            return utc_timestamp(value)
        except (TypeError, ValueError):
            self.fail(record, field, f"is not an ISO-8601 timestamp: {_describe(value)}")
        except OverflowError:
            problem = f"is out of range once converted to UTC (years 1-9999): {_short.repr(value)}"
            self.fail(record, field, problem)

    def _wrong_type(
        self, record: dict[str, t.Any], field: str, value: t.Any, rule: Rule
    ) -> t.NoReturn:
        self.fail(record, field, f"is {_describe(value)}, expected {rule.expected}")

    def fail(self, record: dict[str, t.Any], field: str, problem: str) -> t.NoReturn:
        """Raise the one line naming provider, stream, `field` and the record by its key."""
        key = ", ".join(f"{k}={_short.repr(record.get(k))}" for k in self.keys) or "(no key)"
        msg = f"{prefix(self.stream)}: field '{field}' of record {key} {problem}"
        raise ProviderError(msg)
