"""The reproduction registry, the result record and the command line of one reproduction."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from interpolant import repro
from interpolant.repro.base import Repro, ReproResult, format_result, main, make_row


def test_registry_lists_both_with_paper_numbers() -> None:
    repros = repro.list_repros()
    assert {"seed02_sde_correction": 2, "seed08_pfgm_robustness": 8}.items() <= {
        name: r.paper for name, r in repros.items()
    }.items()
    papers = [r.paper for r in repros.values()]
    assert papers == sorted(papers)
    for name, r in repros.items():
        assert r.name == name and r.title and r.claim and callable(r.run)
    assert "Stochastic Interpolants" in repros["seed02_sde_correction"].title
    assert "PFGM++" in repros["seed08_pfgm_robustness"].title


def test_unknown_name_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown reproduction 'seed99_nothing'"):
        repro.get_repro("seed99_nothing")


def _fake(claim_held: bool) -> Repro:
    def run(quick: bool = False, seed: int = 0) -> ReproResult:
        numbers = {"a": 1.5 + seed, "not finite": math.inf}
        return ReproResult(numbers, claim_held, "a is 1.5", "summary.", {"n": 3}, "a > 1")

    return Repro("seed99_fake", 99, "A Fake Paper", "a is large", run)


def test_call_stamps_wall_time_and_quick_flag() -> None:
    result = _fake(True)(quick=True, seed=2)
    assert result.quick is True and result.wall_time_s >= 0 and result.numbers["a"] == 3.5


def test_row_is_strict_json_with_every_field() -> None:
    fake = _fake(False)
    row = make_row(fake, fake(seed=1), seed=1)
    text = json.dumps(row, allow_nan=False)  # infinities were made strings
    back = json.loads(text)
    for key in (
        "name",
        "paper",
        "claim",
        "numbers",
        "claim_held",
        "settings",
        "date",
        "versions",
        "wall_time_s",
        "quick",
    ):
        assert key in back
    assert back["numbers"] == {"a": 2.5, "not finite": "inf"}
    assert back["settings"] == {"n": 3, "seed": 1} and back["claim_held"] is False
    assert back["versions"]["torch"] and back["versions"]["interpolant"]


def test_printed_verdict_follows_the_flag() -> None:
    for held, word in ((True, "yes"), (False, "no")):
        fake = _fake(held)
        assert format_result(fake, fake()).endswith(f"claim held: {word}")


def test_recording_rules(tmp_path, capsys) -> None:
    fake, out = _fake(True), tmp_path / "rows.jsonl"
    main(fake, ["--results", str(out)])  # a full run records
    main(fake, ["--quick", "--results", str(out)])  # a quick run does not by default
    main(fake, ["--quick", "--record", "--results", str(out)])  # unless asked
    main(fake, ["--no-record", "--results", str(out)])  # and --no-record records nothing
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["quick"] for r in rows] == [False, True]
    assert "claim held: yes" in capsys.readouterr().out


def test_module_runs_with_python_dash_m(tmp_path) -> None:
    out = tmp_path / "rows.jsonl"
    cmd = [
        sys.executable,
        "-W",
        "error::RuntimeWarning",
        "-m",
        "interpolant.repro.seed02_sde_correction",
        "--quick",
        "--record",
        "--results",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "W1 wrong velocity eps=2" in proc.stdout
    row = json.loads(out.read_text())
    verdict = "yes" if row["claim_held"] else "no"
    assert proc.stdout.rstrip().endswith(f"claim held: {verdict}")
    assert row["name"] == "seed02_sde_correction" and row["paper"] == 2 and row["quick"]
