"""The partitions file: which vendor accounts exist, and the Meltano settings of each.

A partition is one vendor account: a name (also its state id suffix and, by default, its
warehouse schema) and a tap config fragment holding exactly one provider's object, plus any
top-level tap settings. Values may use `${VAR}` or `${VAR:-default}` so that secrets stay in the
environment, not in the file. The file's shape and setting names are checked when it is loaded,
`${VAR}` is resolved when a run starts; every problem is one line naming the partition.
"""

from __future__ import annotations

import json
import re
import typing as t
from dataclasses import dataclass
from pathlib import Path

import yaml

EXTRACTOR = "tap-conversations"
DEFAULT_TARGET = "target-postgres"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class PartitionsError(ValueError):
    """The partitions file (or the Meltano project it refers to) cannot be used as written."""


def env_prefix(plugin: str) -> str:
    """Meltano's variable prefix of a plugin: `tap-conversations` -> `TAP_CONVERSATIONS_`."""
    return re.sub(r"[^A-Za-z0-9]", "_", plugin).upper() + "_"


@dataclass(frozen=True)
class Partition:
    """One vendor account: one Meltano run with its own state id and warehouse schema."""

    name: str
    provider: str
    config: dict[str, t.Any]
    schema: str

    def tap_settings(self, environ: t.Mapping[str, str]) -> dict[str, t.Any]:
        """The config fragment, `${VAR}` resolved, as Meltano's dotted names (`onq.api_key`).

        Resolved when a run starts, so only the run's own environment needs the secrets.
        """
        return _flatten(_expand(self.config, f"partition {self.name}: config", environ))


@dataclass(frozen=True)
class PartitionsFile:
    """Every partition, the loader they all run into, and the file they came from."""

    path: Path
    target: str
    partitions: tuple[Partition, ...]

    @property
    def names(self) -> list[str]:
        return [partition.name for partition in self.partitions]

    def get(self, name: str) -> Partition:
        for partition in self.partitions:
            if partition.name == name:
                return partition
        raise PartitionsError(f"{self.path}: no partition named {name!r}")


def _flatten(config: t.Mapping[str, t.Any], prefix: str = "") -> dict[str, t.Any]:
    flat: dict[str, t.Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _expand(value: t.Any, where: str, environ: t.Mapping[str, str]) -> t.Any:
    """Replace `${VAR}` / `${VAR:-default}` in strings, recursively."""
    if isinstance(value, dict):
        return {key: _expand(item, f"{where}.{key}", environ) for key, item in value.items()}
    if isinstance(value, list):
        return [_expand(item, where, environ) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        variable, default = match.group(1), match.group(2)
        if variable in environ:
            return environ[variable]
        if default is not None:
            return default
        raise PartitionsError(f"{where}: environment variable {variable} is not set")

    return _REFERENCE.sub(substitute, value)


def _partition(
    entry: t.Any,
    where: str,
    declared: frozenset[str],
    providers: frozenset[str],
) -> Partition:
    if not isinstance(entry, dict) or set(entry) - {"name", "config", "schema"}:
        raise PartitionsError(f"{where}: expected a mapping with keys name, config and schema")
    name = entry.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise PartitionsError(
            f"{where}: name {name!r} must be lowercase letters, digits and _ (at most 63), "
            "starting with a letter"
        )
    where = f"{where} ({name})"
    config = entry.get("config")
    if not isinstance(config, dict):
        raise PartitionsError(f"{where}: 'config' must be a mapping of tap settings")
    chosen = sorted(key for key in config if key in providers)
    if len(chosen) != 1 or not isinstance(config[chosen[0]], dict):
        raise PartitionsError(
            f"{where}: config must hold exactly one provider object, one of "
            f"{', '.join(sorted(providers))} (found {', '.join(chosen) or 'none'})"
        )
    unknown = sorted(set(_flatten(config)) - declared)
    if unknown:
        raise PartitionsError(
            f"{where}: unknown tap setting(s) {', '.join(unknown)} "
            f"(not declared for {EXTRACTOR} in meltano.yml)"
        )
    schema = entry.get("schema", name)
    if not isinstance(schema, str) or not NAME_PATTERN.match(schema):
        raise PartitionsError(f"{where}: schema {schema!r} is not a plain lowercase identifier")
    return Partition(name=name, provider=chosen[0], config=config, schema=schema)


def load_partitions(path: Path, declared: frozenset[str]) -> PartitionsFile:
    """Read and check the partitions file against the tap settings Meltano declares."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as error:
        raise PartitionsError(f"partitions file {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise PartitionsError(f"partitions file {path}: not valid YAML ({error})") from None
    if not isinstance(document, dict) or not isinstance(document.get("partitions"), list):
        raise PartitionsError(f"{path}: expected a mapping with a 'partitions' list")
    target = document.get("target", DEFAULT_TARGET)
    if not isinstance(target, str) or not target:
        raise PartitionsError(f"{path}: 'target' must be the name of a Meltano loader")
    providers = frozenset(name.split(".", 1)[0] for name in declared if "." in name)
    partitions = tuple(
        _partition(entry, f"{path}: partition {index + 1}", declared, providers)
        for index, entry in enumerate(document["partitions"])
    )
    if not partitions:
        raise PartitionsError(f"{path}: no partitions listed")
    for field in ("name", "schema"):
        values = [getattr(partition, field) for partition in partitions]
        repeated = sorted({value for value in values if values.count(value) > 1})
        if repeated:
            raise PartitionsError(f"{path}: {field} used by more than one partition: {repeated}")
    return PartitionsFile(path=path, target=target, partitions=partitions)


def meltano_env(
    partition: Partition, target: str, providers: t.Iterable[str], base: t.Mapping[str, str]
) -> dict[str, str]:
    """The environment of one partition's `meltano run`.

    Provider settings inherited from `base` are dropped (a partition sends only its own
    provider's object), the partition's settings are added as Meltano setting variables
    (arrays and objects as JSON) and the loader writes into the partition's schema.
    """
    tap_prefix = env_prefix(EXTRACTOR)
    inherited = tuple(f"{tap_prefix}{provider.upper()}_" for provider in providers)
    env = {key: value for key, value in base.items() if not key.startswith(inherited)}
    for setting, value in partition.tap_settings(base).items():
        variable = tap_prefix + setting.replace(".", "_").upper()
        if isinstance(value, str):
            env[variable] = value
        elif isinstance(value, bool):
            env[variable] = "true" if value else "false"
        elif isinstance(value, int | float):
            env[variable] = str(value)
        else:
            env[variable] = json.dumps(value)
    env[f"{env_prefix(target)}DEFAULT_TARGET_SCHEMA"] = partition.schema
    return env
