"""`interpolant graphs train|sample|eval`, run folders, edge lists and pictures."""

from __future__ import annotations

import json

import networkx as nx

from interpolant.cli.main import main
from interpolant.graphs.io import edge_lists, graphs_from_edge_lists, load_run


def test_edge_lists_round_trip() -> None:
    graphs = [nx.path_graph(4), nx.empty_graph(3)]
    back = graphs_from_edge_lists(json.loads(json.dumps(edge_lists(graphs))))
    assert [set(g.edges) for g in back] == [set(g.edges) for g in graphs]
    assert [g.number_of_nodes() for g in back] == [4, 3]


def test_train_sample_eval_graphs(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert (
        main(["--threads", "1", "graphs", "train", "community", "--out", str(run), "--epochs", "2"])
        == 0
    )
    _, meta = load_run(run)
    assert meta["max_nodes"] == 20 and len(meta["test"]) == 20
    assert main(["graphs", "sample", str(run), "--count", "4", "--steps", "3"]) == 0
    assert (run / "samples" / "graphs.png").stat().st_size > 1000
    files = sorted((run / "samples" / "edgelists").iterdir())
    assert len(files) == 4 and files[0].read_text().startswith("# nodes: ")
    capsys.readouterr()
    assert main(["graphs", "eval", str(run), "--steps", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"degree", "clustering", "orbit", "uniqueness", "novelty"}


def test_train_on_a_smiles_file_and_bad_input(tmp_path, capsys) -> None:
    smi = tmp_path / "mols.smi"
    smi.write_text("CCO\nCC(=O)O\nc1ccccc1\n((bad\nCCN\nCC#N\n")
    run = tmp_path / "mols"
    assert (
        main(
            [
                "--threads",
                "1",
                "graphs",
                "train",
                "--smiles",
                str(smi),
                "--out",
                str(run),
                "--epochs",
                "1",
                "--max-nodes",
                "6",
            ]
        )
        == 0
    )
    assert "1 unparsable (first: line 4: '((bad')" in capsys.readouterr().out
    assert main(["graphs", "sample", str(run), "--count", "3", "--steps", "2"]) == 0
    capsys.readouterr()
    assert main(["graphs", "eval", str(run), "--steps", "2"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert 0 <= scores["validity_gdss_charges"] <= 1 and "failures" in scores
    assert sum(scores["failures"].values()) == len(
        json.loads((run / "config.json").read_text())["test"]
    )
    assert len((run / "samples" / "molecules.smi").read_text().splitlines()) == 3
    assert main(["graphs", "eval", str(tmp_path / "missing")]) == 2
    assert "is not a graphs run" in capsys.readouterr().err


def test_pard_presets_train_sample_eval(tmp_path, capsys) -> None:
    run = tmp_path / "pard"
    argv = ["--threads", "1", "graphs", "train", "pard-community", "--out", str(run)]
    assert main([*argv, "--epochs", "1"]) == 0
    model, meta = load_run(run)
    assert meta["method"] == "pard" and meta["pard"]["max_hops"] == 1
    assert model.max_nodes == 20 and len(meta["test"]) == 20
    assert main(["graphs", "sample", str(run), "--count", "3", "--steps", "2"]) == 0
    assert len(list((run / "samples" / "edgelists").iterdir())) == 3
    capsys.readouterr()
    assert main(["graphs", "eval", str(run), "--steps", "2"]) == 0
    assert {"degree", "clustering", "orbit"} <= set(json.loads(capsys.readouterr().out))
    # A PARD run on the user's molecules with aromatic bonds; the weights reload exactly.
    smi = tmp_path / "mols.smi"
    smi.write_text("c1ccccc1O\nCC(=O)O\nc1cc[nH]c1\nCCN\nCC#N\nOc1ccncc1\n")
    mols = tmp_path / "pard-mols"
    argv = ["graphs", "train", "--smiles", str(smi), "--method", "pard", "--aromatic"]
    assert main([*argv, "--out", str(mols), "--epochs", "1"]) == 0
    model, meta = load_run(mols)
    assert meta["aromatic"] and meta["atoms"][-1] == "nH" and model.denoiser.trunk.edge_classes == 5
    again, _ = load_run(mols)
    from interpolant.graphs.pard_train import sample_pard

    a, b = sample_pard(model, 2, seed=3, steps=2), sample_pard(again, 2, seed=3, steps=2)
    assert a.adj.equal(b.adj) and a.nodes.equal(b.nodes)
    capsys.readouterr()
    assert main(["graphs", "eval", str(mols), "--steps", "2"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert 0 <= scores["validity"] <= scores["validity_with_correction"] + 1e-9 <= 1 + 1e-9
    # Bad combinations name the fix.
    assert main(["graphs", "train", "community", "--method", "pard", "--out", str(run)]) == 2
    assert "drop --method pard" in capsys.readouterr().err
    assert main(["graphs", "train", "--smiles", str(smi), "--aromatic", "--out", str(run)]) == 2
    assert "--aromatic is a PARD option" in capsys.readouterr().err
