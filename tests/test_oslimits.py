"""RLIMIT_NOFILE at start-up (oslimits.py): the soft limit goes up to the hard one.

Each case runs in a subprocess whose soft limit is lowered first, so this test process's own
limits are never changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

resource = pytest.importorskip("resource")  # no RLIMIT_NOFILE on Windows

SRC = str(Path(__file__).resolve().parent.parent / "src")
LOW = 64


def run(code: str, tmp_path: Path) -> dict[str, object]:
    """Run `code` after lowering the soft limit to LOW; it prints one JSON object."""
    script = textwrap.dedent(
        """
        import json, resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, ({low}, hard))
        """
    ).format(low=LOW) + textwrap.dedent(code)
    env = {**os.environ, "PYTHONPATH": SRC}
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    result["stderr"] = out.stderr
    return result


def hard_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


needs_room = pytest.mark.skipif(
    hard_limit() <= LOW, reason=f"the hard limit of open files is {LOW} or less"
)


@needs_room
def test_the_soft_limit_is_raised_to_the_hard_limit(tmp_path: Path) -> None:
    result = run(
        """
        import logging
        logging.basicConfig(level=logging.INFO)
        from hookcast.oslimits import raise_open_files_limit
        returned = raise_open_files_limit()
        print(json.dumps({"returned": returned, "now": resource.getrlimit(resource.RLIMIT_NOFILE)}))
        """,
        tmp_path,
    )
    hard = hard_limit()
    assert result["returned"] == [LOW, hard]
    assert result["now"] == [hard, hard]
    assert f"open files limit raised from {LOW} to {hard}" in str(result["stderr"])


@needs_room
def test_an_embedded_hub_raises_it_when_it_starts(tmp_path: Path) -> None:
    result = run(
        """
        import asyncio
        from hookcast import Hub, Settings

        async def main():
            before = resource.getrlimit(resource.RLIMIT_NOFILE)
            async with Hub(Settings(database_url="sqlite:///hub.db"), deliver=False):
                during = resource.getrlimit(resource.RLIMIT_NOFILE)
            return before, during

        before, during = asyncio.run(main())
        print(json.dumps({"before": before, "during": during}))
        """,
        tmp_path,
    )
    hard = hard_limit()
    assert result["before"] == [LOW, hard]
    assert result["during"] == [hard, hard]


def test_nothing_to_do_at_the_hard_limit(tmp_path: Path) -> None:
    # In a subprocess whose soft limit is put at its hard one first (always allowed).
    result = run(
        """
        import logging
        logging.basicConfig(level=logging.INFO)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        from hookcast.oslimits import raise_open_files_limit
        print(json.dumps({"returned": raise_open_files_limit()}))
        """,
        tmp_path,
    )
    assert result["returned"] == [hard_limit(), hard_limit()]
    assert "open files" not in str(result["stderr"])  # nothing changed, nothing logged


@needs_room
def test_a_refused_raise_is_logged_and_start_up_goes_on(tmp_path: Path) -> None:
    # The kernel's refusal, simulated in the subprocess: setrlimit raises as it would.
    result = run(
        """
        import logging
        logging.basicConfig(level=logging.INFO)

        def refuse(*args):
            raise ValueError("not allowed to raise maximum limit")

        resource.setrlimit = refuse
        from hookcast.oslimits import raise_open_files_limit
        returned = raise_open_files_limit()
        print(json.dumps({"returned": returned, "now": resource.getrlimit(resource.RLIMIT_NOFILE)}))
        """,
        tmp_path,
    )
    assert result["returned"] == [LOW, LOW]
    assert result["now"] == [LOW, hard_limit()]
    assert "could not raise the open files limit from 64" in str(result["stderr"])
