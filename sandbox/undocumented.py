"""Fields the vendors' docs do not list, served when `SandboxSettings.undocumented_fields` is on.

Every conversation list and detail gets three top-level fields, and each element of its nested
arrays (`data[]`, `assigned_users[]`, `messages[]`, `participants[]`) two, so a tap's
`schema_evolution` can be tried against an API that sends more than its schema says:

- `x_category` (string) and `x_score` (number) on every record; `x_labels` (object) only on the
  records of the list's second half, so it first appears on a later page or in a later detail;
- `x_note` (string) on every nested element; `x_rank` (integer) only on those of the second half.

Values follow from the record's key and position, so a test can work out every one of them.
"""

from __future__ import annotations

import typing as t

Record = dict[str, t.Any]

TOP_LEVEL = ("x_category", "x_score", "x_labels")
NESTED = ("x_note", "x_rank")
#: The nested arrays that get fields, wherever a record has them.
ARRAYS = ("data", "assigned_users", "messages", "participants")


def later(position: int, count: int) -> bool:
    """Whether the record at `position` of `count` is in the second half (later pages)."""
    return position >= count // 2


def add_fields(record: Record, key: str, position: int, count: int) -> Record:
    """`record` (changed in place) with the undocumented fields of its place in the list."""
    value = str(record.get(key))
    record["x_category"] = f"category-{len(value) % 5}"
    record["x_score"] = position + 0.5
    if later(position, count):
        record["x_labels"] = {"key": value, "position": position}
    for array in ARRAYS:
        for index, element in enumerate(record.get(array) or ()):
            if isinstance(element, dict):
                element["x_note"] = f"note {position}.{index}"
                if later(position, count):
                    element["x_rank"] = index
    return record


def add_to_list(records: list[Record], key: str) -> list[Record]:
    """Every record of a served list (in served order), with its undocumented fields."""
    return [
        add_fields(record, key, position, len(records)) for position, record in enumerate(records)
    ]
