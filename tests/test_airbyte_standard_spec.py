"""The spec passes airbyte-cdk's secret-marking check (its standard tests, `spec` job).

airbyte-cdk's standard connector tests fail a spec in which a property whose name looks like a
secret (`api_key`, `..._secret`, `password`, `..._token`) can hold a value but is not marked
`airbyte_secret: true`. The names below are restated from that check, not taken from the
source's own code.
"""

from __future__ import annotations

import json
import re
import typing as t

from tests.airbyte_messages import run_source

SECRET_NAME = re.compile(r"(key|secret|password|token|credentials|jwt|certificate)$")


def _properties(
    schema: t.Mapping[str, t.Any], pointer: str = ""
) -> t.Iterator[tuple[str, str, t.Any]]:
    for name, prop in (schema.get("properties") or {}).items():
        where = f"{pointer}/properties/{name}"
        yield where, name, prop
        yield from _properties(prop, where)


def test_every_secret_looking_property_is_marked_airbyte_secret() -> None:
    run = run_source(["spec"])
    assert run.returncode == 0
    (spec,) = run.of_type("SPEC")
    properties = list(_properties(spec["spec"]["connectionSpecification"]))
    looking = [
        (where, prop) for where, name, prop in properties if SECRET_NAME.search(name.lower())
    ]
    assert "/properties/onq/properties/api_key" in [where for where, _ in looking]
    unmarked = [where for where, prop in looking if prop.get("airbyte_secret") is not True]
    assert unmarked == []
    # and nothing that cannot hold a secret is marked (booleans, objects)
    for where, _, prop in properties:
        if prop.get("airbyte_secret"):
            kinds = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
            assert {"string", "integer", "number"} & set(kinds), where
    json.dumps(spec)  # plain JSON
