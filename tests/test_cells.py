"""An experiment's cells run one after another, side by side in a local pool, or on a Dask cluster: the results
are the same, byte for byte, wherever they ran (tools/experiments/cells.py)."""

import pytest

from tools.cli import main
from tools.experiments import cells

CHAINS = ["experiment", "chains", "--seeds", "2", "--steps", "10"]
NEEDS_DASK = "dask.distributed is a dev dependency: make installs it (pip install -e '.[dev]')"


def test_a_dask_cluster_runs_the_cells_and_gives_what_one_process_gives(tmp_path, capfd):
    distributed = pytest.importorskip("distributed", reason=NEEDS_DASK)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        assert main([*CHAINS, "--dask", cluster.scheduler_address, "--csv", str(tmp_path / "dask.csv")]) == 0
    assert main([*CHAINS, "--jobs", "1", "--csv", str(tmp_path / "one.csv")]) == 0
    out = capfd.readouterr().out
    assert out.count("per-run figures written to") == 2
    assert (tmp_path / "dask.csv").read_bytes() == (tmp_path / "one.csv").read_bytes()


def test_a_scheduler_that_does_not_answer_is_one_line(tmp_path, capfd, monkeypatch):
    pytest.importorskip("distributed", reason=NEEDS_DASK)
    monkeypatch.setattr(cells, "DASK_CONNECT_SECONDS", 1)
    assert main([*CHAINS, "--dask", "tcp://127.0.0.1:9", "--csv", str(tmp_path / "c.csv")]) == 1
    err = capfd.readouterr().err
    assert err.startswith("vmgames: --dask tcp://127.0.0.1:9: no Dask scheduler answers there (")
    assert err.count("\n") == 1


def test_results_come_back_in_the_cells_order_whatever_finishes_first():
    assert cells.run_cells(pow, [(2, 10), (3, 3), (10, 2), (7, 1)], 2, str) == [1024, 27, 100, 7]
