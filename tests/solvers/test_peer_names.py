"""The peer sampler-name map: every implemented entry builds a valid spec, missing ones say so,
and the command prints the table."""

from __future__ import annotations

import pytest

from interpolant.cli.main import main
from interpolant.errors import UserError
from interpolant.solvers import GRIDS, SOLVERS
from interpolant.solvers.peer_names import GRID_NAMES, PEER_NAMES, find_peer_name, peer_sampler


@pytest.mark.parametrize("entry", [p for p in PEER_NAMES if p.solver is not None], ids=str)
def test_every_implemented_entry_builds_a_sampler(entry):
    spec = peer_sampler(entry.name, entry.peer, nfe=12)
    assert spec.solver.name == entry.solver["name"]
    if entry.grid is not None:
        assert spec.grid.name == (entry.grid if isinstance(entry.grid, str) else entry.grid["name"])


def test_names_are_unique_and_grids_exist():
    names = [p.name for p in PEER_NAMES]
    assert len(names) == len(set(names))  # exact spellings are unique across peers
    assert all(v is None or v in GRIDS for v in GRID_NAMES.values())
    assert all(p.solver is None or p.solver["name"] in SOLVERS for p in PEER_NAMES)


def test_lookup_examples_and_errors():
    spec = peer_sampler("DPM++ 2M Karras", nfe=20, seed=3)
    assert (spec.solver.name, spec.grid.name, spec.nfe, spec.seed) == ("dpmpp_2m", "karras", 20, 3)
    assert peer_sampler("euler a", steps=10).solver.name == "euler_ancestral"
    assert peer_sampler("Euler", steps=10).grid.name == "karras"  # A1111's spelling
    assert find_peer_name("euler").peer == "comfyui"  # the grid is a separate scheduler there
    with pytest.raises(UserError, match="say which with peer="):
        find_peer_name("HEUN")
    assert peer_sampler("DDPMScheduler", steps=10).solver.eta == 1.0
    assert peer_sampler("LMS", nfe=10).solver.name == "lms"
    assert peer_sampler("PNDMScheduler", nfe=19).steps_used() == 10
    assert peer_sampler("ipndm_v", nfe=10).solver.name == "ipndm_v"
    assert peer_sampler("er_sde", nfe=10).solver.name == "er_sde"
    with pytest.raises(UserError, match="unknown peer sampler name 'Eulr'"):
        find_peer_name("Eulr")


def test_info_samplers_prints_the_table(capsys):
    assert main(["info", "--samplers"]) == 0
    out = capsys.readouterr().out
    assert "Euler a" in out and "euler_ancestral, grid karras" in out
    assert "heunpp2" in out and "seeds_3" in out and "use_beta_sigmas -> beta" in out
    assert "not implemented yet" not in out  # every listed name runs here
