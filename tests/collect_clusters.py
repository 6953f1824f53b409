"""Multi-node collection scenarios, each run in its own process (tests/test_collect_cluster.py).

    python tests/collect_clusters.py kill-node  WORK_DIR [BACKEND]  # head + worker node; the worker dies mid-run
    python tests/collect_clusters.py autoscale  WORK_DIR [BACKEND]  # fake autoscaler launches GPU worker nodes

BACKEND is `collect.backend` (actor_pool, the default, or ray_data).
Each prints one JSON line of observations. A scenario starts its own in-process cluster
(`ray.cluster_utils.Cluster`) under a private RAY_TMPDIR, so it never touches the test session's
Ray or any other Ray on the machine (no `ray stop`; `AutoscalingCluster.start` would run one), and
shuts down only the nodes it started.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

TINY = {
    "data": {"batch_size": 32, "eval_batch_size": 64, "train_subset": 128, "val_subset": 64},
    "supernet": {"phases": [{"name": "full", "epochs": 1, "lr": 0.1, "distill": False}]},
    "quant": {"calib_batches": 1, "finetune_steps": 1, "bn_batches": 1},
}


def tiny_collect_config(work: Path, resources: dict | None = None, points: int = 8, **collect):
    """A run config with an untrained super network saved under `work/run`, ~128 images, 1-step fine-tunes."""
    from ems_ray.config import RunConfig
    from ems_ray.space import load_preset
    from ems_ray.supernet import ElasticSuperNet
    from ems_ray.supernet.checkpoint import save_supernet

    space = load_preset("fmnist-small")
    torch.manual_seed(0)
    save_supernet(work / "run" / "supernet" / "supernet.pt", space, ElasticSuperNet(space).state_dict())
    return RunConfig.model_validate({
        "name": "cluster", "run_dir": str(work / "run"), **TINY,
        "collect": {"fp_points": points, "bn_batches": 1, "val_images": 64, "points_per_shard": 2,
                    "progress_every_s": 0, "resources": resources or {}, **collect},
    })


def collect_run(cfg, kind: str, **options):
    """`run_collect_stage` on `cfg`, given the sections it takes (as the pipeline gives them)."""
    from ems_ray.collect import run_collect_stage

    return run_collect_stage(cfg.context(), cfg.collect, kind, quant=cfg.quant, **options)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _alive_nodes() -> list[dict]:
    import ray

    return [n for n in ray.nodes() if n["Alive"]]


def kill_node(work: Path, backend: str = "actor_pool") -> dict:
    """2 actors (head + worker node); the worker node is removed after its first shard; re-run."""
    import ray
    from ray.cluster_utils import Cluster

    from ems_ray.collect import read_points

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False,
        "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}})
    worker = cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        cfg = tiny_collect_config(work, {"num_cpus": 1, "min_actors": 2, "max_actors": 2, "max_restarts": 1,
                                 "startup_timeout_s": 120}, points=16, backend=backend)
        seen = {"killed_after_shards": None, "shards": 0}
        t0 = time.monotonic()
        lines: list[str] = []

        def on_shard(path, table):
            seen["shards"] += 1
            on_worker = [w for n, w in zip(table.column("node").to_pylist(), table.column("worker").to_pylist())
                         if n == worker.node_id]
            if seen["killed_after_shards"] is None and on_worker:
                # the node dies with the actor's next batch in flight: its worker process first (so the
                # tiny batch cannot finish while the raylet goes down), then the node's Ray processes
                os.kill(int(on_worker[0].rsplit(":", 1)[1]), signal.SIGKILL)
                cluster.remove_node(worker, allow_graceful=False)
                seen["killed_after_shards"] = seen["shards"]

        first = collect_run(cfg, "fp", log=lines.append, on_shard=on_shard)
        t_first = time.monotonic() - t0
        # re-run on what is left (the head): resume, and extend the plan by 4 points
        cfg.collect.resources.min_actors = 1
        second = collect_run(cfg, "fp", points=20, log=lines.append)
        folder = first.folder
        raw = pq.read_table(folder)  # every row in every shard, no dedupe
        table = read_points(folder)
        return {
            "killed_after_shards": seen["killed_after_shards"], "lost_batches": first.lost_batches,
            "seconds": [round(t_first, 1), round(time.monotonic() - t0 - t_first, 1)],
            "first_total": first.total_points, "second_new": second.new_points,
            "raw_rows": raw.num_rows, "unique_ids": len(set(raw.column("sample_id").to_pylist())),
            "ids": table.column("sample_id").to_pylist(),
            "nodes": sorted(set(raw.column("node").to_pylist())), "worker_node": worker.node_id,
            "log": lines,
        }
    finally:
        ray.shutdown()
        cluster.shutdown()


def autoscale(work: Path, backend: str = "actor_pool") -> dict:
    """Actors ask for GPUs; the head has none; the fake autoscaler launches GPU worker nodes."""
    import ray
    import yaml
    from ray._private.services import get_node_ip_address
    from ray.cluster_utils import Cluster

    from ems_ray.collect import read_points

    os.environ.update({"AUTOSCALER_UPDATE_INTERVAL_S": "1", "RAY_FAKE_CLUSTER": "1"})
    port = _free_port()
    autoscaling = {
        "cluster_name": "ems-collect-demo", "max_workers": 2,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True, "gcs_address": f"{get_node_ip_address()}:{port}"},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 1}, "node_config": {}, "max_workers": 0},
            "gpu-worker": {"resources": {"CPU": 1, "GPU": 1, "object_store_memory": 200 * 2**20},
                           "node_config": {}, "min_workers": 0, "max_workers": 2},
        },
        "head_node_type": "ray.head.default", "upscaling_speed": 1.0, "idle_timeout_minutes": 0.1,
        "auth": {}, "docker": {}, "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
        "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "rsync_exclude": [], "rsync_filter": [],
    }
    config_path = work / "autoscaling.yaml"
    config_path.write_text(yaml.safe_dump(autoscaling))
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "gcs_server_port": port,
        "autoscaling_config": str(config_path)})
    ray.init(address=cluster.address, log_to_driver=False)
    timeline: list[tuple[float, int]] = []
    stop = threading.Event()
    t0 = time.monotonic()

    def watch():
        while not stop.is_set():
            n = len(_alive_nodes()) - 1
            if not timeline or timeline[-1][1] != n:
                timeline.append((round(time.monotonic() - t0, 1), n))
            stop.wait(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    try:
        workers_at_start = len(_alive_nodes()) - 1
        watcher.start()
        cfg = tiny_collect_config(work, {"num_cpus": 1, "num_gpus": 1, "min_actors": 1, "max_actors": 2,
                                 "startup_timeout_s": 180}, points=16, backend=backend)
        lines: list[str] = []
        summary = collect_run(cfg, "fp", log=lines.append)
        finished_at = round(time.monotonic() - t0, 1)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(_alive_nodes()) > 1:  # idle nodes are terminated
            time.sleep(1)
        stop.set()
        watcher.join()
        table = read_points(summary.folder)
        return {
            "workers_at_start": workers_at_start, "timeline": timeline, "finished_at_s": finished_at,
            "workers_at_end": len(_alive_nodes()) - 1, "points": table.num_rows,
            "devices": sorted(set(table.column("device").to_pylist())),
            "nodes": sorted(set(table.column("node").to_pylist())), "log": lines,
        }
    finally:
        stop.set()
        ray.shutdown()
        cluster.shutdown()


def main(argv: list[str]) -> int:
    scenario, work, options = argv[0], Path(argv[1]), argv[2:]
    work.mkdir(parents=True, exist_ok=True)
    # a private, short temp root: Ray's socket paths must stay under ~107 characters
    ray_tmp = tempfile.mkdtemp(prefix="emsc", dir="/tmp")
    os.environ["RAY_TMPDIR"] = ray_tmp
    from ems_ray.ray_session import local_only_ray

    try:
        with local_only_ray():  # every node of the in-process cluster on 127.0.0.1, as a local run
            result = {"kill-node": kill_node, "autoscale": autoscale}[scenario](work, *options)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    print("RESULT " + json.dumps(result, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
