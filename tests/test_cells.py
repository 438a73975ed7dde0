"""An experiment's cells run one after another, side by side in a local pool, or on a Dask cluster: the results
are the same, byte for byte, wherever they ran (tools/experiments/cells.py)."""

import pytest
from vmgames.tools.cli import main
from vmgames.tools.experiments import cells

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


def _record_calls(calls: list):
    def counted(base: int, exponent: int) -> int:
        calls.append((base, exponent))
        return base ** exponent
    return counted


def test_a_journal_keeps_each_result_and_resume_runs_only_the_rest(tmp_path):
    path = str(tmp_path / "sweep.csv.cells")
    journal = cells.Journal(path, {"rounds": 3})
    assert cells.run_cells(pow, [(2, 10), (3, 3)], 1, str, journal=journal) == [1024, 27]
    journal.close()
    calls: list = []
    resumed = cells.Journal(path, {"rounds": 3}, resume=True)
    assert cells.run_cells(_record_calls(calls), [(2, 10), (5, 2), (3, 3)], 1, str, journal=resumed) == [1024, 25, 27]
    resumed.close()
    assert calls == [(5, 2)]
    assert len(open(path).read().splitlines()) == 1 + 3
    with pytest.raises(cells.ResumeError, match="other settings than {'rounds': 4}"):
        cells.Journal(path, {"rounds": 4}, resume=True)
    assert cells.Journal(path, {"rounds": 4}).done == {}      # without --resume: a fresh journal


def test_an_experiment_resumed_gives_the_csv_a_whole_run_gives(tmp_path, capfd):
    first = tmp_path / "part.csv"
    assert main(["experiment", "chains", "--seeds", "1", "--steps", "10", "--jobs", "1", "--csv", str(first)]) == 0
    assert main(["experiment", "chains", "--seeds", "2", "--steps", "10", "--jobs", "1", "--csv", str(first),
                 "--resume"]) == 0
    assert len((tmp_path / "part.csv.cells").read_text().splitlines()) == 1 + 4
    assert main([*CHAINS, "--jobs", "1", "--csv", str(tmp_path / "whole.csv")]) == 0
    assert first.read_bytes() == (tmp_path / "whole.csv").read_bytes()
    assert main(["experiment", "chains", "--seeds", "2", "--steps", "11", "--csv", str(first), "--resume"]) == 1
    assert "vmgames: --resume: " in capfd.readouterr().err
    assert main(["experiment", "chains", "--resume"]) == 2


def test_two_cells_of_one_name_are_refused():
    with pytest.raises(ValueError, match="two cells have the same name"):
        cells.run_cells(pow, [(2, 1), (2, 1)], 1, str)
