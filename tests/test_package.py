"""A package that installs anywhere (issue 17): `python -m build` gives a wheel and an sdist
that carry every file of src/hookcast; the wheel, installed into a fresh virtualenv away from
the source tree (its dependencies from PyPI, at the versions of requirements.lock), runs
`hookcast migrate`, `hookcast serve` and delivers a signalled event to a real HTTPS receiver.
And requirements.lock pins a version of every dependency that pyproject.toml allows."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from support.processes import free_port
from support.receivers import Receiver

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
BIN = Path(sys.executable).parent


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            name, _, version = line.split(";")[0].strip().partition("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_the_lock_pins_every_dependency_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        requirements += extra
    pins = locked()
    for text in requirements:
        requirement = Requirement(text)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (text, pins[name])
        if name not in ("ruff", "mypy", "uv", "build", "google-re2"):  # pinned exactly
            assert "<" in str(requirement.specifier), f"{text}: no upper bound"


def source_files() -> set[str]:
    """Every file of the package in the source tree (what git tracks, so no caches)."""
    listed = subprocess.run(
        ["git", "ls-files", "src/hookcast"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return {name.removeprefix("src/") for name in listed}


def pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert shutil.which("git") and (ROOT / ".git").exists(), "run from the git checkout"
    # The build's own setuptools and the wheel's dependencies come from PyPI, as the
    # project's own set-up does (make test installs .venv from it): no PyPI, no test run,
    # so its absence is a failure to see, not a skip that would hide a broken package.
    assert pypi_reachable(), "needs PyPI (https://pypi.org), as make test's own set-up does"
    out = tmp_path_factory.mktemp("dist")
    # The build runs on a copy: it writes build/ and *.egg-info into the tree it builds.
    tree = tmp_path_factory.mktemp("tree")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    for name in source_files():
        (tree / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "src" / name, tree / "src" / name)
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(tree)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


@pytest.mark.slow  # builds (about 20 s)
def test_wheel_and_sdist_carry_every_file(dist: Path) -> None:
    wanted = source_files()
    [wheel] = dist.glob("*.whl")
    [sdist] = dist.glob("*.tar.gz")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    assert wanted <= in_wheel, sorted(wanted - in_wheel)
    with tarfile.open(sdist) as archive:  # hookcast-0.1.0/src/hookcast/...
        in_sdist = {name.partition("/")[2].removeprefix("src/") for name in archive.getnames()}
    assert wanted <= in_sdist, sorted(wanted - in_sdist)


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel and its runtime dependencies (no test tools)."""
    venv = tmp_path_factory.mktemp("venv")
    uv = BIN / "uv"
    assert uv.exists(), "uv is in the test extra: make test installs it"
    subprocess.run([str(uv), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, timeout=120)  # fmt: skip
    [wheel] = dist.glob("*.whl")
    subprocess.run(
        [str(uv), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
         f"{wheel}[postgres]", "--constraint", str(LOCK)],
        check=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )  # fmt: skip
    return venv


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HOOKCAST_"))}
    return {**env, **extra}


@pytest.mark.slow  # builds, installs into a new virtualenv, runs a real server
def test_the_wheel_runs_end_to_end_away_from_the_source_tree(
    installed: Path, tmp_path: Path, receiver: Receiver, ca_bundle_path: str
) -> None:
    hookcast = str(installed / "bin" / "hookcast")
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "import hookcast; print(hookcast.__file__)"],
        capture_output=True, text=True, cwd=tmp_path, env=clean_env(), check=True,
    ).stdout  # fmt: skip
    assert where.startswith(str(installed)), where  # not the source tree
    db = f"sqlite:///{tmp_path / 'data' / 'hooks.db'}"
    env = clean_env(
        HOOKCAST_DATABASE_URL=db,
        HOOKCAST_ALLOW_TARGETS="127.0.0.0/8",
        HOOKCAST_CA_BUNDLE=ca_bundle_path,
        HOOKCAST_RETRY_DELAYS="0.1",
    )

    def cli(*args: str) -> str:
        done = subprocess.run([hookcast, *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "is at schema" in cli("migrate")
    key = cli("keys", "create", "--tenant", "Cust1234", "--associate-id", "5").splitlines()[-1]
    port = free_port()
    serve = subprocess.Popen(
        [hookcast, "serve", "--port", str(port)], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        api = httpx.Client(
            base_url=f"http://127.0.0.1:{port}/api/v1", headers={"Authorization": f"Bearer {key}"}
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                api.get("/Webhook")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and serve.poll() is None, "serve did not start"
                time.sleep(0.1)
        hook = {"Name": "h", "Events": ["contact.changed"], "TargetUrl": receiver.url, "Secret": "s" * 16}  # fmt: skip
        assert api.post("/Webhook", json=hook).status_code in (200, 201)
        cli("signal", "contact.changed", "7", "--tenant", "Cust1234", "--data", '{"name": "Ada"}')
        bodies = [json.loads(r.body) for r in receiver.wait_for(2, timeout=30)]
        assert [(b["Event"], b["PrimaryKey"]) for b in bodies][-1] == ("contact.changed", 7)
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
    output = serve.stdout.read() if serve.stdout else ""
    # uvicorn ends by raising the signal it stopped for again: SIGTERM's status, or 0
    assert serve.returncode in (0, -signal.SIGTERM), output
    assert "Traceback" not in output
