"""meltano.yml declares every tap setting, with `sensitive` exactly on the secrets."""

from __future__ import annotations

import os
import subprocess
import sys
import typing as t
from pathlib import Path

import yaml

from tap_conversations.tap import TapConversations

# The SDK adds these to the class's schema once a tap has been built; Meltano knows them.
SDK_BUILTIN_SETTINGS = ("stream_map", "faker_config", "flattening_", "batch_config")
MELTANO_YML = Path(__file__).resolve().parent.parent / "meltano.yml"


def leaf_settings(schema: dict[str, t.Any], prefix: str = "") -> dict[str, bool]:
    """Dotted setting name -> secret?, for every non-object property."""
    found: dict[str, bool] = {}
    for name, prop in schema["properties"].items():
        if "properties" in prop:
            found |= leaf_settings(prop, f"{prefix}{name}.")
        else:
            found[f"{prefix}{name}"] = bool(prop.get("secret"))
    return found


def test_every_setting_is_declared_with_its_sensitivity() -> None:
    project = yaml.safe_load(MELTANO_YML.read_text())
    (extractor,) = project["plugins"]["extractors"]
    declared = {s["name"]: bool(s.get("sensitive")) for s in extractor["settings"]}
    assert all({"label", "description", "kind"} <= set(s) for s in extractor["settings"])
    ours = {
        name: secret
        for name, secret in leaf_settings(TapConversations.config_jsonschema).items()
        if not name.startswith(SDK_BUILTIN_SETTINGS)
    }
    assert declared == ours


def test_meltano_accepts_the_project_file(tmp_path: Path) -> None:
    env = {**os.environ, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false"}
    env["MELTANO_DATABASE_URI"] = f"sqlite:///{tmp_path / 'meltano.db'}"
    completed = subprocess.run(
        [
            str(Path(sys.executable).parent / "meltano"),
            "config",
            "list",
            "--all",
            "tap-conversations",
        ],
        cwd=MELTANO_YML.parent,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "perform_engage.api_key" in completed.stdout


def test_every_loader_is_defined_inline() -> None:
    project = yaml.safe_load(MELTANO_YML.read_text())
    loaders = {p["name"]: p for p in project["plugins"]["loaders"]}
    assert set(loaders) == {"target-jsonl", "target-csv", "target-postgres"}
    for loader in loaders.values():
        assert {"namespace", "pip_url", "executable"} <= set(loader)
