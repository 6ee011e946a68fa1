"""The README's outbox snippets (section "Transactional signals") run as pasted: each block
tagged `<!-- test: run -->` there, in a fresh interpreter in an empty folder. (A general
README test may run them too; this one keeps the outbox's own examples honest.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a Python process per block

README = Path(__file__).resolve().parent.parent / "README.md"
TAGGED = re.compile(r"^<!-- test: run(?: +[\w.-]+)? *-->\n+```python\n(.*?)^```", re.M | re.S)


def section_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Transactional signals: SQLAlchemy and Django")
    end = text.index("\n## ", start + 1)
    return TAGGED.findall(text[start:end])


BLOCKS = section_blocks()


def test_the_section_has_its_runnable_blocks() -> None:
    assert len(BLOCKS) == 2


@pytest.mark.parametrize("code", BLOCKS, ids=["sqlalchemy", "django"])
def test_block_runs_as_pasted(code: str, tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HOOKCAST_", "DJANGO_"))},
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # What the block committed is in the outbox, waiting for a dispatcher.
    import sqlite3

    database = next(tmp_path.glob("*.db"))
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT name, primary_key FROM event_outbox ORDER BY id").fetchall()
    assert rows == (
        [("contact.created", 1), ("contact.changed", 1)]
        if "signal_async" in code
        else [("contact.changed", 994863)]
    )
