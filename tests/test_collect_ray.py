"""Collection on Ray, both backends (`collect.backend`): CPU-only actors in the shared session, an
interrupted Ray Data run resumed, a killed worker node, autoscaling."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ems_ray.collect import CollectError, read_points

from collect_clusters import collect_run, tiny_collect_config

pytestmark = pytest.mark.ray
HERE = Path(__file__).parent


@pytest.mark.e2e
@pytest.mark.timeout(900)
@pytest.mark.parametrize("backend", ["actor_pool", "ray_data"])
def test_cpu_only_actors_write_shards_that_ray_data_and_pyarrow_read(ray_local, tmp_path, backend):
    cfg = tiny_collect_config(tmp_path / "ray", {"num_cpus": 1, "num_gpus": 0, "min_actors": 1, "max_actors": 2},
                              points=8, points_per_shard=2, backend=backend)
    lines: list[str] = []
    summary = collect_run(cfg, "fp", log=lines.append)
    assert (summary.total_points, summary.new_points, summary.lost_batches) == (8, 8, 0)
    assert any("ready on node" in line and "(cpu)" in line for line in lines)
    folder = summary.folder
    by_pyarrow = pq.read_table(folder)
    by_ray = ray_local.data.read_parquet(str(folder)).to_pandas()
    assert by_pyarrow.num_rows == len(by_ray) == 8
    assert sorted(by_ray["sample_id"]) == list(range(8))
    assert set(by_pyarrow.column("device").to_pylist()) == {"cpu"}
    # the same plan measured in this process gives the same rows (seeded per point, not per worker)
    local = tiny_collect_config(tmp_path / "local", points=8)
    ref = collect_run(local, "fp", use_ray=False, log=lambda s: None)
    assert read_points(ref.folder).column("accuracy").equals(read_points(folder).column("accuracy"))
    assert collect_run(cfg, "fp", log=lambda s: None).new_points == 0  # idempotent


class Interrupted(Exception):
    pass


def _interrupt(path, table):
    raise Interrupted(path)


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_ray_data_backend_resumes_an_interrupted_run_without_duplicates(ray_local, tmp_path):
    cfg = tiny_collect_config(tmp_path / "rd", {"num_cpus": 1, "min_actors": 1, "max_actors": 1}, points=4,
                              points_per_shard=2, backend="ray_data")
    with pytest.raises(Interrupted):  # the driver stops after its first shard, one block still in flight
        collect_run(cfg, "fp", log=lambda s: None, on_shard=_interrupt)
    folder = tmp_path / "rd" / "run" / "collect" / "fp"
    assert read_points(folder).num_rows == 2
    lines: list[str] = []
    again = collect_run(cfg, "fp", log=lines.append)
    assert (again.total_points, again.new_points) == (4, 2)
    assert any("ready on node" in line and "(cpu)" in line for line in lines)
    raw = pq.read_table(folder)  # every row of every shard: nothing measured twice, nothing lost
    assert sorted(raw.column("sample_id").to_pylist()) == [0, 1, 2, 3]
    # the same points as in this process (the same EvaluationWorker, seeded per point)
    local = collect_run(tiny_collect_config(tmp_path / "local", points=4), "fp", use_ray=False, log=lambda s: None)
    assert read_points(local.folder).column("accuracy").equals(read_points(folder).column("accuracy"))


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_ray_data_backend_names_the_request_that_cannot_be_placed(ray_local, tmp_path):
    cfg = tiny_collect_config(tmp_path, {"num_cpus": 4, "min_actors": 1, "max_actors": 1, "startup_timeout_s": 3},
                              points=2, backend="ray_data")
    with pytest.raises(CollectError, match=r"min_actors=1 .* within 3 s; each asks for num_cpus=4.0"):
        collect_run(cfg, "fp", log=lambda s: None)
    assert not list((tmp_path / "run" / "collect" / "fp").glob("part-*"))


def _scenario(name: str, work: Path, timeout: int, backend: str = "actor_pool") -> dict:
    """Run a tests/collect_clusters.py scenario in its own process (its own Ray cluster)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    # the scenario imports this checkout's ems_ray, wherever the package is installed from
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run([sys.executable, str(HERE / "collect_clusters.py"), name, str(work), backend], env=env,
                          capture_output=True, text=True, timeout=timeout)
    result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and result, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(result[-1].removeprefix("RESULT "))


@pytest.mark.e2e
@pytest.mark.timeout(900)
@pytest.mark.parametrize("backend", ["actor_pool", "ray_data"])
def test_killed_worker_node_loses_and_duplicates_nothing(tmp_path, backend):
    r = _scenario("kill-node", tmp_path, timeout=300, backend=backend)
    assert r["killed_after_shards"] is not None and r["worker_node"] in r["nodes"], r
    if backend == "actor_pool":
        assert r["lost_batches"] >= 1, r  # the batch in flight on the dead node was measured again
    else:  # Ray Data restarts the actor (in a new process) and re-runs the blocks it held
        assert any("restarted on node" in line for line in r["log"]), r
    assert r["first_total"] == 16 and r["second_new"] == 4, r
    assert r["raw_rows"] == r["unique_ids"] == 20 and r["ids"] == list(range(20)), r


@pytest.mark.e2e
@pytest.mark.timeout(900)
@pytest.mark.parametrize("backend", ["actor_pool", "ray_data"])
def test_autoscaler_launches_gpu_nodes_for_collection(tmp_path, backend):
    r = _scenario("autoscale", tmp_path, timeout=400, backend=backend)
    assert r["workers_at_start"] == 0 and max(n for _, n in r["timeline"]) >= 1
    assert r["points"] == 16 and r["devices"] == ["cpu"]  # fake GPU nodes: CUDA absent, CPU fallback
    assert any("no CUDA device" in line for line in r["log"])
    assert r["workers_at_end"] == 0  # idle nodes were terminated
