from __future__ import annotations

import typing as t
from pathlib import Path

import pytest

from sandbox import Sandbox, SandboxSettings
from tests.meltano_project import MeltanoProject, copy_project, install_plugins


@pytest.fixture
def sandbox_factory() -> t.Iterator[t.Callable[..., Sandbox]]:
    """Start sandboxes with custom settings; every one is stopped after the test."""
    started: list[Sandbox] = []

    def start(**settings: t.Any) -> Sandbox:
        sandbox = Sandbox(SandboxSettings(**settings))
        sandbox.start()
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def sandbox(sandbox_factory: t.Callable[..., Sandbox]) -> Sandbox:
    """A small sandbox whose Perform & Engage lists are capped at 7 records per page."""
    return sandbox_factory(
        pe_conversations=40,
        pe_plans=9,
        pe_max_limit=7,
        onq_conversations=45,
        respondent_conversations=25,
    )


@pytest.fixture(scope="session")
def installed_plugins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `meltano install` of this project's plugins, shared by the session's tests."""
    return install_plugins(tmp_path_factory.mktemp("meltano-plugins"))


@pytest.fixture
def meltano_project(tmp_path: Path, installed_plugins: Path) -> MeltanoProject:
    """A fresh copy of the project (own meltano.yml, .env, system db), plugins installed."""
    return MeltanoProject(copy_project(tmp_path / "project"), plugins=installed_plugins)
