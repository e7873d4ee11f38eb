"""A stream's schema as msgspec types: a page that is exactly what the schema says is decoded and
type-checked in one pass, in C, instead of record by record in Python.

`records.RecordChecker` builds one `TypedRecord` class per stream from its `Shape`, and a stream
whose pages are bare JSON arrays of records, or whose body is the record (`ApiStream.typed_body`),
decodes each body with it first (`ApiStream.page_decoder`, `transport.decoded_body`). The
type says exactly what the Python checks let through unchanged:

- every property is optional, `UNSET` when absent, so a record keeps the fields the API sent
  and no others, in the schema's order;
- every object, at every depth the schema describes, refuses a field the schema does not name;
- each value may have exactly the JSON types `records.python_types` allows (a `date-time` only
  text or null; an opaque id, `text_fields`, anything).

So the typed decode succeeds only for a page the Python checks would pass with nothing to drop,
report or refuse. Anything else (an unknown field, a wrong type at any depth, a body that is
not a JSON array, a truncated body) makes it raise, and the page is decoded untyped and checked
in Python, which drops, reports or fails with the exact message. What is left to Python for a
typed record is what types cannot say: ids made text, the primary key present, and date-times
normalised (`RecordChecker.check`). A schema the types cannot express (a property with no
type) gives no class, and its stream decodes untyped.

On the 50,000 onQ sandbox records, decoding, checks and encoding a record's JSON cost 2.6 µs a
record this way (checked in place, `records.InPlace`) against 4.4 for an untyped decode, the
Python checks and the same encoding.
"""

from __future__ import annotations

import typing as t
from itertools import repeat
from operator import attrgetter
from typing import ClassVar

import msgspec
from msgspec import UNSET, UnsetType

if t.TYPE_CHECKING:
    from collections.abc import Collection

    from tap_conversations.records import Rule, Shape

_NONE_TYPE = type(None)


class TypedObject(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """An object of a typed record, below its top level. Not tracked by the garbage collector
    (`gc=False`): decoded from JSON, it holds no reference back to anything."""


class TypedRecord(TypedObject):
    """A record decoded from a typed page, until `RecordChecker.check` makes it a dict.

    `get` reads it as a dict would (a paginator or a scan watch reads a page's keys before the
    checks). Attributes are `f0`, `f1`, ...: a property may be called anything, `get` included.
    """

    # property name -> attribute (`ClassVar` as msgspec recognises it, not `t.ClassVar`)
    attributes: ClassVar[dict[str, str]] = {}
    # attributes of `dropped` fields (not in the schema, reported), which the checks drop
    dropped: ClassVar[tuple[str, ...]] = ()

    def get(self, name: str, default: t.Any = None) -> t.Any:
        attribute = self.attributes.get(name)
        value = default if attribute is None else getattr(self, attribute)
        return default if value is UNSET else value


def field_values(rows: t.Sequence[dict[str, t.Any] | TypedRecord], name: str) -> list[t.Any]:
    """`[row.get(name) for row in rows]`, without a Python call per row for a batch of one
    typed record class (a typed page's) or of dicts."""
    kinds = set(map(type, rows))
    if len(kinds) == 1:
        kind = kinds.pop()
        if kind is dict:
            return list(map(dict.get, t.cast("list[dict[str, t.Any]]", rows), repeat(name)))
        if issubclass(kind, TypedRecord):
            attribute = kind.attributes.get(name)
            if attribute is None:
                return [None] * len(rows)
            values = list(map(attrgetter(attribute), rows))
            return (
                [None if value is UNSET else value for value in values]
                if UNSET in values
                else values
            )
    return [row.get(name) for row in rows]


class Inexpressible(Exception):
    """A schema the types cannot say exactly."""


def record_type(
    shape: Shape, text_fields: Collection[str], dropped: Collection[str] = ()
) -> type[TypedRecord] | None:
    """The `TypedRecord` class of a stream's top-level `shape`; `None` when it cannot be said.

    `dropped`: top-level fields the schema does not name, which the API sends and the checks
    reported already. They are taken whatever their value, and the checks drop them, as they
    drop them from an untyped record; so an API that added a field keeps its pages typed.
    """
    try:
        return t.cast("type[TypedRecord]", _struct(shape, text_fields, TypedRecord, dropped))
    except (Inexpressible, TypeError):  # TypeError: a union msgspec does not take
        return None


def _struct(
    shape: Shape,
    text_fields: Collection[str],
    base: type[TypedObject],
    dropped: Collection[str] = (),
) -> type[TypedObject]:
    fields: list[tuple[str, t.Any, t.Any]] = []
    attributes: dict[str, str] = {}
    for index, (name, rule) in enumerate(shape.rules.items()):
        attributes[name] = attribute = f"f{index}"
        kind = t.Any if name in text_fields else t.Union[_value_type(rule), UnsetType]  # noqa: UP007 (a runtime union of types built here)
        fields.append((attribute, kind, msgspec.field(default=UNSET, name=name)))
    extra = [name for name in sorted(dropped) if name not in shape.rules]
    for index, name in enumerate(extra, start=len(fields)):
        attributes[name] = attribute = f"f{index}"
        fields.append((attribute, t.Any, msgspec.field(default=UNSET, name=name)))
    namespace: dict[str, t.Any] = {}
    if base is TypedRecord:
        namespace = {"attributes": attributes, "dropped": tuple(attributes[n] for n in extra)}
    name = f"Typed_{shape.path.rstrip('.') or 'record'}"
    struct = msgspec.defstruct(name, fields, bases=(base,), namespace=namespace)
    return t.cast("type[TypedObject]", struct)


def _value_type(rule: Rule) -> t.Any:
    """The union of the types `rule` lets through unchanged (see `records.Rule.conformed`)."""
    kinds = rule.types & {str, _NONE_TYPE} if rule.timestamp else rule.types
    if not kinds:
        raise Inexpressible
    members: list[t.Any] = []
    for kind in sorted(kinds, key=lambda kind: kind.__name__):
        if kind is dict:
            shape = rule.objects
            members.append(dict[str, t.Any] if shape is None else _struct(shape, (), TypedObject))
        elif kind is list:
            items = rule.arrays
            members.append(list[t.Any] if items is None else list[_value_type(items)])  # type: ignore[misc]
        else:
            members.append(kind)
    return t.Union[tuple(members)]  # noqa: UP007 (a runtime union)
