"""The command-line blocks of docs/howto/graphs.md run as written, in order, in a fresh folder.

Its python blocks share one namespace and run in tests/test_docs.py; the bash blocks train
GDSS and PARD for a few epochs (about two minutes of CPU, so marked slow: ``pytest -m slow``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "howto" / "graphs.md"
BIN = Path(sys.executable).parent  # where the `interpolant` script is


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", PAGE.read_text(), flags=re.S)


def test_page_has_command_blocks() -> None:
    blocks = bash_blocks()
    assert len(blocks) >= 3
    text = "".join(blocks)
    for command in ("graphs train", "graphs sample", "graphs eval", "--smiles", "--graphs"):
        assert command in text, f"the how-to shows no `{command}`"


@pytest.mark.slow
def test_graphs_howto_commands_run(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    outputs = []
    for i, body in enumerate(bash_blocks()):
        done = subprocess.run(
            ["bash", "-ec", body], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"graphs.md bash block {i} failed:\n{body}\n{done.stderr}"
        outputs.append(done.stdout)
    # What the commands promise to write and print.
    assert (tmp_path / "runs/graphs-community/samples/graphs.png").is_file()
    assert len(list((tmp_path / "runs/graphs-community/samples/edgelists").iterdir())) == 4
    smiles = (tmp_path / "runs/pard-mols/samples/molecules.smi").read_text().splitlines()
    assert len(smiles) == 8
    metrics = json.loads(outputs[1][outputs[1].index("{") :])
    assert {"validity", "uniqueness", "novelty", "validity_with_correction"} <= set(metrics)
    assert 0.0 <= metrics["validity"] <= metrics["validity_with_correction"] <= 1.0
    assert "7 of 8 SMILES kept; 1 unparsable" in outputs[2]
    assert (tmp_path / "runs/mine/samples/graphs.png").is_file()
