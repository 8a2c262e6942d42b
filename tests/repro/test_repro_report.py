"""docs/reproductions.md is generated from the JSON rows: one table row per name."""

from __future__ import annotations

import json

import pytest

from interpolant.repro.report import latest_rows, load_rows, write_report


def _row(name: str, paper: int, held: bool, quick: bool, headline: str) -> dict:
    return {
        "name": name,
        "paper": paper,
        "title": f"Paper {paper}",
        "claim": f"claim {paper}",
        "rule": "x < y",
        "numbers": {"x": 0.125, "y": 1.0},
        "claim_held": held,
        "headline": headline,
        "summary": "One paragraph.",
        "settings": {"seed": 0},
        "quick": quick,
        "wall_time_s": 12.3,
        "date": "2025-01-02T03:04:05+00:00",
        "versions": {"torch": "2"},
    }


ROWS = [
    _row("seed08_b", 8, True, False, "old full run"),
    _row("seed02_a", 2, False, True, "only quick | run"),
    _row("seed08_b", 8, False, False, "new full run"),
    _row("seed08_b", 8, True, True, "later quick run"),
]


def _table_rows(text: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index("|---|---|---|---|---|---|---|---|")
    rows = []
    for line in lines[start + 1 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_latest_full_row_wins_and_quick_only_names_show_their_quick_row() -> None:
    shown = latest_rows(ROWS)
    assert list(shown) == ["seed02_a", "seed08_b"]  # by paper number
    assert shown["seed08_b"]["headline"] == "new full run"
    assert shown["seed02_a"]["headline"] == "only quick | run"


def test_report_has_one_row_per_name(tmp_path) -> None:
    results, out = tmp_path / "rows.jsonl", tmp_path / "docs" / "reproductions.md"
    results.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")
    text = write_report(results, out, registered=["seed02_a", "seed08_b", "seed11_c"])
    assert out.read_text() == text
    rows = _table_rows(text)
    assert len(rows) == 2
    assert rows[0].startswith("| [seed02_a]") and "only quick \\| run" in rows[0]
    assert "| **no** | quick, seed 0 |" in rows[0]
    assert rows[1].startswith("| [seed08_b]") and "new full run" in rows[1]
    assert "| **no** | full, seed 0 | 12.3 s | 2025-01-02 |" in rows[1]
    assert "Registered but not run yet: `seed11_c`." in text
    assert "| x | 0.125 |" in text and "## seed08_b" in text


def test_missing_results_file_gives_an_empty_table(tmp_path) -> None:
    text = write_report(tmp_path / "none.jsonl", tmp_path / "r.md", registered=["seed02_a"])
    assert _table_rows(text) == [] and "`seed02_a`" in text


def test_bad_line_names_the_line(tmp_path) -> None:
    results = tmp_path / "rows.jsonl"
    results.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"rows.jsonl:2 is not valid JSON"):
        load_rows(results)
