"""Every bash block of README.md and docs/*.md is run by a test; the README's run here.

A registry below names each block and the test that runs it (this module,
tests/test_readme_install.py, tests/test_orchestration_readme.py), or why none can. The blocks
are read from the pages themselves, so a command cannot change there without being run.
Only the example values are replaced by the sandbox's (URL, user, keys, the PostgreSQL
URL); onQ and Respondent are also pointed at the sandbox with one extra `meltano config set
... api_url` each, since their blocks rely on the vendors' default URLs. Each scenario runs in
one fresh copy of the project: the install block (`meltano install`) runs once per module, and
each scenario starts from the pristine `meltano.yml`, no `.env`, no system database (state) and
no output, as a new user would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import typing as t
from collections import Counter
from pathlib import Path

import pytest

from tests import pg_cluster
from tests.children import DERIVED
from tests.meltano_project import ROOT, VENV_BIN, clean_env, copy_project

if t.TYPE_CHECKING:
    from sandbox import Sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

STREAMS = {
    "perform_engage": [
        "perform_engage_conversations",
        "perform_engage_conversation_details",
        "perform_engage_conversation_elements",
        "perform_engage_conversation_plans",
        "perform_engage_conversation_plan_details",
        "perform_engage_conversation_plan_users",
        "perform_engage_conversation_plan_departments",
    ],
    "onq": ["onq_conversations"],
    "respondent": ["respondent_conversations", "respondent_messages", "respondent_participants"],
}
#: Stock PATH: no pyenv, no uv; the demo must bootstrap uv itself with /usr/bin/python3.
STOCK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


#: Every page whose bash blocks must each be run by a test.
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def bash_blocks(page: Path) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.DOTALL)


def block(name: str) -> str:
    """The one block of its page that `BLOCKS[name]` names (by its first line)."""
    page, first_command = BLOCKS[name]
    found = [b for b in bash_blocks(ROOT / page) if b.startswith(first_command)]
    assert len(found) == 1, f"{page}: expected one bash block starting {first_command!r}"
    return found[0]


#: The bash blocks run here and in tests/test_readme_install.py (`add_to_project`, `pip`,
#: `airbyte`): name -> (page, how the block starts).
BLOCKS = {
    "demo": ("README.md", "./scripts/demo.sh"),
    "test": ("README.md", "./scripts/test.sh"),
    "add_to_project": ("README.md", "meltano install extractor tap-conversations"),
    "pip": ("README.md", "python3 -m venv .venv-tap"),
    "install": ("README.md", "source .venv/bin/activate\nmeltano install"),
    "perform_engage": ("README.md", "meltano config set tap-conversations perform_engage."),
    "onq": ("README.md", "meltano config set tap-conversations onq."),
    "respondent": ("README.md", "meltano config set tap-conversations respondent."),
    "run": ("README.md", "meltano invoke tap-conversations:check"),
    "postgres": ("README.md", "meltano config set target-postgres"),
    "select": ("README.md", "meltano select"),
    "without_meltano": ("README.md", "source .venv/bin/activate\ntap-conversations"),
    "airbyte": ("docs/airbyte.md", "source-conversations spec"),
}
#: Blocks another test module runs as written.
RUN_ELSEWHERE = {
    (
        "docs/orchestration.md",
        "uv sync --group orchestration",
    ): "tests/test_orchestration_readme.py",
}
#: Blocks no test can run here, each with its reason.
NOT_RUN = {
    ("docs/airbyte.md", "docker build"): (
        "no Docker on these machines; tests/test_airbyte_image.py runs the Dockerfile's install "
        "step outside Docker and checks its labels and entrypoint"
    ),
}


def test_every_bash_block_of_every_page_is_run_by_a_test() -> None:
    known = [*BLOCKS.values(), *RUN_ELSEWHERE, *NOT_RUN]
    for page in PAGES:
        relative = str(page.relative_to(ROOT))
        for found in bash_blocks(page):
            owners = [
                first for where, first in known if where == relative and found.startswith(first)
            ]
            assert len(owners) == 1, f"{relative}: no test runs the bash block {found[:80]!r}"
    for name in BLOCKS:
        block(name)  # exactly one each
    for (page, first), owner in RUN_ELSEWHERE.items():
        assert any(b.startswith(first) for b in bash_blocks(ROOT / page)), (page, first)
        assert (ROOT / owner).exists(), owner
    for page, first in NOT_RUN:
        assert any(b.startswith(first) for b in bash_blocks(ROOT / page)), (page, first)


def test_ci_runs_the_readme_test_command() -> None:
    assert block("test").strip() == "./scripts/test.sh"
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def sandbox_values(sandbox: Sandbox) -> dict[str, str]:
    """README example value -> the sandbox's."""
    config = sandbox.tap_config()
    pe, onq, respondent = config["perform_engage"], config["onq"], config["respondent"]
    return {
        "https://pro.weekly10.net/api/v2": pe["api_url"],
        "me@example.com": pe["username"],
        "'YOUR-API-KEY'": pe["api_key"],
        "'YOUR-ONQ-KEY'": onq["api_key"],
        "'YOUR-ONQ-SECRET'": onq["api_secret"],
        "https://yoursite.com": onq["issuer"],
        "etl@yoursite.com": onq["subject"],
        "https://yoursite.onq.io": onq["audience"],
        "'YOUR-RESPONDENT-KEY'": respondent["api_key"],
        "'YOUR-RESPONDENT-SECRET'": respondent["api_secret"],
    }


class Project:
    """A copy of the repository where README blocks run in one bash each."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = clean_env(TAP_CONVERSATIONS_PROGRESS_INTERVAL_SECONDS="0")
        self.values: dict[str, str] = {}

    def reset(self, sandbox: Sandbox) -> Project:
        """Back to a freshly installed project: no settings, no state, no output."""
        shutil.copy2(ROOT / "meltano.yml", self.root / "meltano.yml")
        for leftover in (".env", ".meltano/meltano.db", "output", "config.json", "state.json"):
            path = self.root / leftover
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        for jsonl in self.root.glob("*.jsonl"):
            jsonl.unlink()
        self.sandbox = sandbox
        self.values = sandbox_values(sandbox)
        return self

    def run(self, name: str, *, ok: bool = True, **values: str) -> subprocess.CompletedProcess[str]:
        script = block(name)
        for example, real in {**self.values, **values}.items():
            script = script.replace(example, real)
        completed = subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if ok:
            output = completed.stdout[-2000:] + completed.stderr[-3000:]
            assert completed.returncode == 0, (name, output)
        return completed

    def point_at_sandbox(self, provider: str) -> None:
        """onQ and Respondent blocks keep the vendors' default URL; the test redirects it."""
        url = self.sandbox.tap_config()[provider]["api_url"]
        meltano = str(VENV_BIN / "meltano")
        subprocess.run(
            [meltano, "config", "set", "tap-conversations", f"{provider}.api_url", url],
            cwd=self.root,
            env=self.env,
            check=True,
            capture_output=True,
            timeout=300,
        )

    def configure(self, *providers: str) -> None:
        for provider in providers:
            self.run(provider)
            if provider != "perform_engage":
                self.point_at_sandbox(provider)

    def jsonl_counts(self) -> dict[str, int]:
        out = self.root / "output" / "jsonl"
        return {f.stem: len(f.read_text().splitlines()) for f in out.glob("*.jsonl")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The README's install block, run once in a fresh copy of the project."""
    root = copy_project(tmp_path_factory.mktemp("readme") / "project")
    (root / ".venv").symlink_to(VENV_BIN.parent)
    project = Project(root)
    project.run("install")
    return project


@pytest.fixture
def project(installed: Project, sandbox: Sandbox) -> Project:
    return installed.reset(sandbox)


def expected_counts(sandbox: Sandbox, *providers: str) -> dict[str, int]:
    data = sandbox.data
    counts = {
        "perform_engage_conversations": len(data.pe_conversations),
        "perform_engage_conversation_details": len(data.pe_conversation_details),
        "perform_engage_conversation_plans": len(data.pe_plans),
        "perform_engage_conversation_plan_details": len(data.pe_plan_details),
        "onq_conversations": len(data.onq_conversations),
        "respondent_conversations": len(data.respondent_conversations),
        **{derived.stream: len(derived.expected(sandbox)) for derived in DERIVED},
    }
    return {s: counts[s] for p in providers for s in STREAMS[p]}


@pytest.mark.parametrize("provider", ["perform_engage", "onq", "respondent"])
def test_one_provider_alone_through_meltano(
    provider: str, sandbox: Sandbox, project: Project
) -> None:
    project.configure(provider)
    completed = project.run("run")
    label = {"perform_engage": "Perform & Engage 365", "onq": "onQ", "respondent": "Respondent"}
    assert completed.stdout.splitlines() == [f"{provider} ({label[provider]}): ok"]
    assert project.jsonl_counts() == expected_counts(sandbox, provider)


def test_a_wrong_key_fails_the_check_naming_provider_and_setting(project: Project) -> None:
    project.run("respondent", **{"'YOUR-RESPONDENT-KEY'": "respondent-bad-key-0006"})
    project.point_at_sandbox("respondent")
    completed = project.run("run", ok=False)
    assert completed.returncode != 0
    (line,) = completed.stdout.splitlines()
    assert line.startswith("respondent (Respondent): ")
    assert "respondent.api_key" in line
    assert "respondent-bad-key-0006" not in completed.stdout + completed.stderr
    assert not (project.root / "output" / "jsonl").exists()  # the run never started


@pytest.mark.skipif(not pg_cluster.available(), reason="PostgreSQL 15 binaries not found")
def test_all_three_providers_into_jsonl_and_postgres_then_select_and_map(
    sandbox: Sandbox, project: Project
) -> None:
    project.configure("perform_engage", "onq", "respondent")
    completed = project.run("run")
    assert len(completed.stdout.splitlines()) == 3
    assert all(line.endswith(": ok") for line in completed.stdout.splitlines())
    everything = expected_counts(sandbox, "perform_engage", "onq", "respondent")
    assert project.jsonl_counts() == everything

    with pg_cluster.PostgresCluster() as postgres:
        url = f"postgresql+psycopg://{postgres.user}:unused@127.0.0.1:{postgres.port}/postgres"
        example = "'postgresql+psycopg://etl:secret@localhost:5432/warehouse'"
        project.run("postgres", **{example: url})
        for stream, count in everything.items():
            rows = postgres.rows(f"select count(*) as n from conversations.{stream}")
            assert rows == [{"n": count}], stream

    for jsonl in (project.root / "output" / "jsonl").glob("*.jsonl"):
        jsonl.unlink()
    # Incremental after the runs above, which sent every version: only upstream changes go.
    mutation = sandbox.mutate("perform_engage", changed=3, added=2)
    completed = project.run("select")
    assert "perform_engage_conversations" in completed.stdout
    conversations = project.root / "output" / "jsonl" / "perform_engage_conversations.jsonl"
    records = [json.loads(line) for line in conversations.read_text().splitlines()]
    assert sorted(r["api_id"] for r in records) == sorted(
        mutation.changed_keys + mutation.added_keys
    )
    assert all("person_name" not in r and "person_email" not in r for r in records)
    assert project.jsonl_counts() == {"perform_engage_conversations": len(records)}


def test_without_meltano_first_and_second_run(sandbox: Sandbox, project: Project) -> None:
    (project.root / "config.json").write_text(json.dumps(sandbox.tap_config()))

    project.run("without_meltano")
    state = json.loads((project.root / "state.json").read_text())
    bookmarks = state["value"]["bookmarks"] if "value" in state else state["bookmarks"]
    assert "onq_conversations" in bookmarks
    first = Counter(line_counts(project.root))
    assert first == Counter(expected_counts(sandbox, "perform_engage", "onq", "respondent"))

    for jsonl in project.root.glob("*.jsonl"):
        jsonl.unlink()
    project.run("without_meltano")  # incremental, nothing changed upstream
    second = line_counts(project.root)
    # Each version is sent once: incremental streams send nothing, full-table ones everything.
    assert second.get("onq_conversations", 0) == 0
    assert second.get("perform_engage_conversations", 0) == 0
    assert second["perform_engage_conversation_plans"] == first["perform_engage_conversation_plans"]


def test_a_failing_tap_fails_the_without_meltano_pipe(sandbox: Sandbox, project: Project) -> None:
    config = sandbox.tap_config()
    config["onq"]["api_secret"] = "onq-wrong-secret-padded-to-32-bytes-0007"
    (project.root / "config.json").write_text(json.dumps(config))
    completed = project.run("without_meltano", ok=False)
    assert completed.returncode != 0
    assert "check onq credentials" in completed.stderr


def line_counts(directory: Path) -> dict[str, int]:
    """target-jsonl names its files `<stream>-<timestamp>.jsonl`."""
    counts: dict[str, int] = {}
    for path in directory.glob("*.jsonl"):
        if path.name == "state-out.jsonl":
            continue
        stream = path.stem.rsplit("-", 1)[0]
        counts[stream] = counts.get(stream, 0) + len(path.read_text().splitlines())
    return counts


@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="no stock /usr/bin/python3")
def test_demo_on_a_stock_python_without_uv(tmp_path: Path) -> None:
    root = copy_project(tmp_path / "project")
    env = clean_env()
    env["PATH"] = STOCK_PATH
    env["PYTHON"] = "/usr/bin/python3"
    env["UV_CACHE_DIR"] = os.environ.get("UV_CACHE_DIR", str(Path.home() / ".cache" / "uv"))
    completed = subprocess.run(
        ["bash", "-e", "-c", block("demo")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, (completed.stdout[-2000:], completed.stderr[-3000:])
    assert (root / ".tools" / "bin" / "uv").exists()  # bootstrapped, not taken from PATH
    version = (root / ".venv" / "pyvenv.cfg").read_text()
    assert "/usr/bin" in version  # .venv built on the stock interpreter
    csvs = {p.stem for p in (root / "output" / "csv").glob("*.csv")}
    assert csvs == {s for streams in STREAMS.values() for s in streams}
    assert "Rows written" in completed.stdout
