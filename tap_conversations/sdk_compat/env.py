"""Settings from environment variables (`--config ENV`), nested provider settings included."""

from __future__ import annotations

import json
import os
import typing as t

from singer_sdk.plugin_base import PluginBase

# ----------------------------------------------------------------------------------------------
# Settings from environment variables (`--config ENV`), nested provider settings included.
#
# Why: the SDK reads `<TAP>_<KEY>` for top-level keys only, so a provider object could only be
# given whole, as JSON (`TAP_CONVERSATIONS_ONQ='{...}'`), and `number` settings stayed strings.
# Meltano, and the README, name nested settings `TAP_CONVERSATIONS_ONQ_API_KEY`; a Meltano
# plugin command (`meltano invoke tap-conversations:check`) only receives settings as such
# variables, because Meltano's config file name is not known to a command. The one place the
# SDK builds config from the environment is the private classproperty
# `PluginBase._env_var_config`; this overrides it, calling the SDK's version first (it also loads
# a `.env` file) and adding what it leaves out. Guarded by `tests/test_sdk_compat_env.py`.
# ----------------------------------------------------------------------------------------------


def _types(schema: t.Mapping[str, t.Any]) -> set[str]:
    declared = schema.get("type", [])
    return {declared} if isinstance(declared, str) else set(declared)


def _coerce(raw: str, schema: t.Mapping[str, t.Any]) -> t.Any:
    """`raw` as the schema's type; left a string when it does not parse (validation names it)."""
    types = _types(schema)
    try:
        if "integer" in types:
            return int(raw)
        if "number" in types:
            return float(raw) if any(c in raw for c in ".eE") else int(raw)
        if "boolean" in types:
            return raw.strip().lower() in {"true", "1", "yes", "on"}
        if types & {"array", "object"}:
            return json.loads(raw)
    except ValueError:
        return raw
    return raw


def nested_env_config(
    schema: t.Mapping[str, t.Any], prefix: str, environ: t.Mapping[str, str]
) -> dict[str, t.Any]:
    """Values of the nested properties of object settings, from `<PREFIX><KEY>_<SUB>` variables.

    The walk follows the schema, so `PERFORM_ENGAGE_CONVERSATION_FILTERS_PERSON_NAME` is
    unambiguous. Only variables that are set produce keys: an unset provider stays absent.
    """
    found: dict[str, t.Any] = {}
    for key, prop in schema.get("properties", {}).items():
        name = prefix + key.upper().replace("-", "_")
        if "properties" in prop:
            inner = nested_env_config(prop, name + "_", environ)
            if inner:
                found[key] = inner
        elif name in environ:
            found[key] = _coerce(environ[name], prop)
    return found


def _deep_merge(base: dict[str, t.Any], extra: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class _ClassProperty:
    """A read-only property of the class (what the SDK's private `classproperty` is)."""

    def __init__(self, getter: t.Callable[[t.Any], t.Any]) -> None:
        self.fget = getter

    def __get__(self, instance: object, owner: type) -> t.Any:
        return self.fget(owner)


class NestedEnvConfig(PluginBase):
    """Mixin for the tap class: `--config ENV` reads nested settings and numbers too."""

    @_ClassProperty
    def _env_var_config(cls) -> dict[str, t.Any]:
        sdk_version = PluginBase.__dict__["_env_var_config"].fget
        config: dict[str, t.Any] = sdk_version(cls)  # loads .env into os.environ first
        schema = cls.config_jsonschema
        prefix = f"{cls.name.upper().replace('-', '_')}_"  # the SDK's `<TAP>_`
        for key, prop in schema.get("properties", {}).items():
            value = config.get(key)
            if isinstance(value, str) and "number" in _types(prop):
                config[key] = _coerce(value, prop)
            if "properties" in prop:
                inner = nested_env_config(prop, f"{prefix}{key.upper()}_", os.environ)
                if inner:
                    whole = value if isinstance(value, dict) else {}
                    config[key] = _deep_merge(whole, inner)
        return config
