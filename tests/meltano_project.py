"""Throwaway copies of this Meltano project, driven with the real `meltano` command.

`meltano install` runs once per test session (in `installed_plugins`); each test then gets its
own copy of the project files (its own `meltano.yml`, `.env` and system database, so
`meltano config set` in one test cannot leak into another) whose `.meltano/` plugin
directories point at that one installation.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import typing as t
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
#: What a project copy holds: everything Meltano and `pip_url: -e .` need.
PROJECT_FILES = (
    "meltano.yml",
    "pyproject.toml",
    "uv.lock",
    "README.md",
    "tap_conversations",
    "sandbox",
    "scripts",
)


def copy_project(destination: Path) -> Path:
    destination.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=ignore)
        else:
            shutil.copy2(source, destination / name)
    return destination


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without tap or Meltano settings, Meltano quiet and offline."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TAP_CONVERSATIONS_", "TARGET_", "MELTANO_", "VIRTUAL_ENV"))
    }
    env["MELTANO_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


class MeltanoProject:
    """One copy of the project; `meltano(...)` runs a Meltano command in it."""

    def __init__(self, root: Path, plugins: Path | None = None) -> None:
        self.root = root
        self.env = clean_env()
        if plugins is not None:
            (root / ".meltano").mkdir(exist_ok=True)
            for kind in ("extractors", "loaders"):
                (root / ".meltano" / kind).symlink_to(plugins / ".meltano" / kind)

    def run(
        self, command: list[str], *, env: dict[str, str] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command,
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def meltano(
        self, *args: str, env: dict[str, str] | None = None, ok: bool = True
    ) -> subprocess.CompletedProcess[str]:
        completed = self.run([str(VENV_BIN / "meltano"), *args], env=env)
        if ok:
            assert completed.returncode == 0, (args, completed.stderr[-3000:])
        return completed

    def set(self, plugin: str, settings: t.Mapping[str, t.Any]) -> None:
        """`meltano config set <plugin> <name> <value>` for each setting."""
        for name, value in settings.items():
            self.meltano("config", "set", plugin, name, str(value))


def install_plugins(destination: Path) -> Path:
    """A project copy with every plugin of `meltano.yml` installed (no Meltano Hub needed)."""
    project = MeltanoProject(copy_project(destination))
    project.meltano("install")
    return destination
