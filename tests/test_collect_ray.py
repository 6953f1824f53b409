"""Collection on Ray: CPU-only actors in the shared session, a killed worker node, autoscaling."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ems_ray.collect import read_points, run_collect_stage

from collect_clusters import tiny_collect_config

pytestmark = pytest.mark.ray
HERE = Path(__file__).parent


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_cpu_only_actors_write_shards_that_ray_data_and_pyarrow_read(ray_local, tmp_path):
    cfg = tiny_collect_config(tmp_path / "ray", {"num_cpus": 1, "num_gpus": 0, "min_actors": 1, "max_actors": 2},
                              points=8, points_per_shard=2)
    lines: list[str] = []
    summary = run_collect_stage(cfg, "fp", log=lines.append)
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
    ref = run_collect_stage(local, "fp", use_ray=False, log=lambda s: None)
    assert read_points(ref.folder).column("accuracy").equals(read_points(folder).column("accuracy"))
    assert run_collect_stage(cfg, "fp", log=lambda s: None).new_points == 0  # idempotent


def _scenario(name: str, work: Path, timeout: int) -> dict:
    """Run a tests/collect_clusters.py scenario in its own process (its own Ray cluster)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, str(HERE / "collect_clusters.py"), name, str(work)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and result, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(result[-1].removeprefix("RESULT "))


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_killed_worker_node_loses_and_duplicates_nothing(tmp_path):
    r = _scenario("kill-node", tmp_path, timeout=300)
    assert r["killed_after_shards"] is not None and r["worker_node"] in r["nodes"], r
    assert r["lost_batches"] >= 1, r  # the batch in flight on the dead node was measured again
    assert r["first_total"] == 16 and r["second_new"] == 4, r
    assert r["raw_rows"] == r["unique_ids"] == 20 and r["ids"] == list(range(20)), r


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_autoscaler_launches_gpu_nodes_for_collection(tmp_path):
    r = _scenario("autoscale", tmp_path, timeout=400)
    assert r["workers_at_start"] == 0 and max(n for _, n in r["timeline"]) >= 1
    assert r["points"] == 16 and r["devices"] == ["cpu"]  # fake GPU nodes: CUDA absent, CPU fallback
    assert any("no CUDA device" in line for line in r["log"])
    assert r["workers_at_end"] == 0  # idle nodes were terminated
