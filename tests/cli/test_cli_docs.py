"""The command-line how-to pages run as written: their bash and python blocks, in order, in a
fresh folder per page (minutes of CPU: marked slow, run with ``pytest -m slow``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "howto"
PAGES = ["cli.md", "train-your-data.md", "presets.md", "multi-gpu.md"]
BIN = Path(sys.executable).parent  # where the `interpolant` and `torchrun` scripts are


def blocks(page: Path) -> list[tuple[str, str]]:
    return re.findall(r"```(bash|python)\n(.*?)```", page.read_text(), flags=re.S)


@pytest.mark.slow
@pytest.mark.parametrize("name", PAGES)
def test_cli_howto_commands_run(name: str, tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    found = blocks(DOCS / name)
    assert found, f"{name} has no bash or python blocks"
    for i, (lang, body) in enumerate(found):
        if lang == "python" and body.startswith("# make_examples.py"):
            (tmp_path / "make_examples.py").write_text(body)  # run by the next bash block
            continue
        cmd = ["bash", "-ec", body] if lang == "bash" else [sys.executable, "-c", body]
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{name} block {i} failed:\n{body}\n{done.stderr[-3000:]}"
