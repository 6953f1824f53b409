"""Start a two-node Ray cluster on this machine, run an ems-ray job on it with `ray job submit`,
check the run directory, and always stop exactly the processes of that cluster.

    .venv/bin/python scripts/two_node_check.py                       # the whole pipeline, tiny config
    .venv/bin/python scripts/two_node_check.py --job train_supernet  # one stage's job

The job is submitted as on a real cluster: `ray job submit --working-dir . -- python
jobs/<job>.py --config <tiny config> --set run_dir=<absolute path>`, so it runs from Ray's copy of
the checkout and writes only to the absolute run directory. Another Ray may be running here, and
`ray stop` would kill it: this cluster has its own ports and temp dir, and cleanup signals only
processes whose command line names that temp dir or whose environment carries it (`TAG_VAR`, set
for every `ray` command here), and their descendants (Ray workers rename themselves `ray::...`, so
they are also found through their raylet). Exit status 0: the job succeeded and the run directory
holds what it should.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from ems_ray.ray_session import CLUSTER_SWITCH_ENV

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's `ray` and `python` (jobs run `python` from PATH)
DEFAULT_BASE = Path("/tmp/ems-two-node")
TAG_VAR = "EMS_TWO_NODE_CLUSTER"  # set to the temp dir in every process this cluster starts


@dataclass(frozen=True)
class NodePorts:
    """Every port one node listens on; none is Ray's default, so a local Ray keeps its own."""

    node_manager: int
    object_manager: int
    min_worker: int
    max_worker: int
    agent_http: int
    agent_grpc: int
    metrics: int
    runtime_env_agent: int

    def args(self) -> list[str]:
        return [f"--node-manager-port={self.node_manager}", f"--object-manager-port={self.object_manager}",
                f"--min-worker-port={self.min_worker}", f"--max-worker-port={self.max_worker}",
                f"--dashboard-agent-listen-port={self.agent_http}",
                f"--dashboard-agent-grpc-port={self.agent_grpc}",
                f"--metrics-export-port={self.metrics}", f"--runtime-env-agent-port={self.runtime_env_agent}"]

    def fixed(self) -> list[int]:
        return [self.node_manager, self.object_manager, self.agent_http, self.agent_grpc, self.metrics,
                self.runtime_env_agent]


GCS_PORT, DASHBOARD_PORT, CLIENT_PORT = 6390, 8275, 10101
HEAD = NodePorts(6391, 6392, 20000, 20499, 52400, 52401, 52402, 52403)
WORKER = NodePorts(6393, 6394, 20500, 20999, 52410, 52411, 52412, 52413)
DASHBOARD = f"http://127.0.0.1:{DASHBOARD_PORT}"


def tiny_config(run_dir: Path) -> dict:
    """The smallest run that still passes through every stage: a few steps, points and candidates."""
    return {
        "name": "two-node", "run_dir": str(run_dir), "seed": 0, "space": "fmnist-small",
        "data": {"name": "fashion-mnist", "batch_size": 32, "eval_batch_size": 64, "train_subset": 256,
                 "val_subset": 128, "test_subset": 128},
        "supernet": {
            "steps_per_epoch": 2, "eval": {"random_subnets": 1, "bn_batches": 1, "val_batches": 1},
            "phases": [
                {"name": "full", "epochs": 1, "lr": 0.05, "kernels": "max", "depth_levels": 1,
                 "width_fraction": 0, "distill": False},
                {"name": "shrink", "epochs": 1, "lr": 0.02, "width_fraction": 1.0, "sort_channels": True},
            ],
            "workers": 1, "cpus_per_worker": 1, "threads_per_worker": 1,
        },
        "quant": {"calib_batches": 1, "finetune_steps": 2, "bn_batches": 1, "val_batches": 1},
        "collect": {"fp_points": 16, "quant_points": 8, "policies_per_arch": 2, "bn_batches": 1,
                    "val_images": 64, "points_per_shard": 4, "progress_every_s": 30,
                    "resources": {"num_cpus": 1, "min_actors": 1, "max_actors": 2, "startup_timeout_s": 300}},
        "predictor": {"hidden": 32, "fp": {"epochs": 5, "patience": 5, "batch_size": 8},
                      "quant": {"epochs": 5, "patience": 5, "batch_size": 8}, "threads": 1},
        "search": {"evolution": {"population": 10, "parents": 4, "mutations": 5, "crossovers": 5,
                                 "generations": 3},
                   "compare": {"algorithms": ["random"], "candidates": 10, "population": 10, "parents": 4}},
        "final": {"budgets": ["latency=0.45ms"], "methods": ["ems", "fixed8"], "resources": {"num_cpus": 1}},
    }


# ---- this cluster's processes -----------------------------------------------------------------

def _process_table(tag: bytes) -> dict[int, tuple[int, bool]]:
    """pid -> (parent pid, whether its command line or environment carries `tag`)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            tagged = tag in (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # exited while we looked
        try:
            tagged = tagged or (TAG_VAR.encode() + b"=" + tag) in (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            pass  # another user's process: not ours
        table[int(entry.name)] = (ppid, tagged)
    return table


def cluster_processes(marker: str) -> set[int]:
    """This cluster's processes: those whose command line names its temp dir `marker` or whose
    environment has `TAG_VAR=marker` (inherited from our `ray start`: the Ray client server names
    neither), plus all their descendants; never this process or its ancestors."""
    table = _process_table(marker.encode())
    protected, pid = set(), os.getpid()
    while pid > 1 and pid not in protected:
        protected.add(pid)
        pid = table.get(pid, (1, False))[0]
    children: dict[int, list[int]] = {}
    for child, (parent, _) in table.items():
        children.setdefault(parent, []).append(child)
    found: set[int] = set()
    todo = [p for p, (_, tagged) in table.items() if tagged and p not in protected]
    while todo:
        p = todo.pop()
        if p not in found and p not in protected and p > 1:
            found.add(p)
            todo.extend(children.get(p, []))
    return found


def _any_alive(pids: set[int]) -> bool:
    return any(Path(f"/proc/{p}").exists() for p in pids)


def stop_cluster(marker: str, log=print, grace_s: float = 8.0) -> None:
    """SIGTERM this cluster's processes, SIGKILL what is left after `grace_s`; repeat for any that
    appeared meanwhile (a raylet restarting workers while it shuts down)."""
    for _ in range(3):
        pids = cluster_processes(marker)
        if not pids:
            return
        log(f"[two-node] stopping {len(pids)} processes of this cluster")
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in pids:
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace_s
            while sig == signal.SIGTERM and time.monotonic() < deadline and _any_alive(pids):
                time.sleep(0.2)
    left = cluster_processes(marker)
    if left:
        log(f"[two-node] WARNING: processes still alive: {sorted(left)}")


# ---- the check --------------------------------------------------------------------------------

def _busy_ports(ports: list[int]) -> list[int]:
    busy = []
    for port in ports:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                busy.append(port)
    return busy


def _ray(*args: str, env: dict, timeout: float, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ray"), *args], env=env, cwd=REPO, timeout=timeout, check=check)


def _alive_nodes() -> int:
    from ray.util.state import list_nodes

    return sum(n.state == "ALIVE" for n in list_nodes(address=DASHBOARD))


def start_cluster(base: Path, env: dict, log=print) -> None:
    busy = _busy_ports([GCS_PORT, DASHBOARD_PORT, CLIENT_PORT, *HEAD.fixed(), *WORKER.fixed()])
    if busy:
        raise RuntimeError(f"ports {busy} are in use (a cluster of a previous check? run with --stop-only)")
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--object-store-memory=300000000",
              "--disable-usage-stats"]
    _ray("start", "--head", f"--port={GCS_PORT}", f"--dashboard-port={DASHBOARD_PORT}",
         "--dashboard-host=127.0.0.1", f"--ray-client-server-port={CLIENT_PORT}", f"--temp-dir={base / 'head'}",
         *HEAD.args(), *common, env=env, timeout=180)
    _ray("start", f"--address=127.0.0.1:{GCS_PORT}", f"--temp-dir={base / 'worker'}", *WORKER.args(), *common,
         env=env, timeout=180)
    deadline = time.monotonic() + 60
    while (n := _alive_nodes()) < 2:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {n} Ray node(s) alive a minute after `ray start`")
        time.sleep(1)
    log(f"[two-node] 2 nodes alive; dashboard and job server on {DASHBOARD}")


def check_run(job: str, run_dir: Path) -> list[str]:
    """What is missing from the run directory (empty: all good)."""
    if job == "train_supernet":
        return [] if (run_dir / "supernet" / "supernet.pt").is_file() else ["supernet/supernet.pt missing"]
    manifest = run_dir / "manifest.json"
    if not manifest.is_file():
        return [f"{manifest} missing"]
    stages = {s["name"]: s["status"] for s in json.loads(manifest.read_text())["stages"]}
    from ems_ray.pipeline.stages import STAGE_NAMES

    problems = [f"stage {name}: {stages.get(name, 'absent')}" for name in STAGE_NAMES
                if stages.get(name) != "done"]
    if not (run_dir / "report" / "report.md").is_file():
        problems.append("report/report.md missing")
    return problems


def _actor_spread() -> str:
    """Which nodes the job's actors ran on (Ray keeps dead actors' records for a while)."""
    from ray.util.state import list_actors

    by_class: dict[str, set[str]] = {}
    for a in list_actors(address=DASHBOARD, limit=1000, raise_on_missing_output=False):
        if a.node_id:  # actors that never started have none
            by_class.setdefault(a.class_name, set()).add(a.node_id)
    return ", ".join(f"{cls} on {len(nodes)} node(s)" for cls, nodes in sorted(by_class.items()))


def run_check(job: str, base: Path, timeout_s: float, log=print) -> int:
    run_dir, config = base / "run", base / "two-node.yaml"
    # Token authentication on for every node, the job client and the state API (this process):
    # recent Ray turns it on for a head that finds ~/.ray/auth_token but not for a joining node.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update({"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "RAY_USAGE_STATS_ENABLED": "0",
                TAG_VAR: str(base),
                # a real multi-node cluster: Ray's multi-node switch on, even when this runs beside a
                # local (loopback-only) session that turned it off, e.g. the test suite's
                CLUSTER_SWITCH_ENV: "1"})
    t0 = time.monotonic()
    start_cluster(base, env, log)
    t_cluster = time.monotonic() - t0
    # the config names a relative run_dir on purpose: only --set puts results where the check looks
    config.write_text(yaml.safe_dump({**tiny_config(run_dir), "run_dir": "runs/two-node"}, sort_keys=False))
    submission = f"ems-two-node-{int(time.time())}"
    entry = ["python", f"jobs/{job}.py", "--config", str(config), "--set", f"run_dir={run_dir}"]
    log(f"[two-node] ray job submit --working-dir . -- {' '.join(entry)}")
    t1 = time.monotonic()
    try:
        _ray("job", "submit", f"--address={DASHBOARD}", f"--submission-id={submission}", "--working-dir=.",
             "--", *entry, env=env, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        log(f"[two-node] the job did not finish within {timeout_s:.0f} s")
    t_job = time.monotonic() - t1
    from ray.job_submission import JobSubmissionClient

    status = JobSubmissionClient(DASHBOARD).get_job_status(submission)
    problems = [] if status.value == "SUCCEEDED" else [f"job {submission}: {status.value}"]
    problems += check_run(job, run_dir)
    log(f"[two-node] job {status.value} in {t_job:.0f} s (cluster start {t_cluster:.0f} s); "
        f"{_actor_spread() or 'no actors listed'}; {_alive_nodes()} nodes alive at the end")
    for p in problems:
        log(f"[two-node] FAILED: {p}")
    if not problems:
        log(f"[two-node] OK: {run_dir} is complete")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", default="pipeline", help="script under jobs/ (default: pipeline)")
    parser.add_argument("--base", type=Path, default=DEFAULT_BASE,
                        help=f"temp dir of the cluster, the config and the run (default: {DEFAULT_BASE})")
    parser.add_argument("--timeout", type=float, default=1500, help="seconds the job may take")
    parser.add_argument("--keep", action="store_true", help="keep --base (logs, run directory) after success")
    parser.add_argument("--stop-only", action="store_true",
                        help="only stop the cluster a killed check left behind")
    args = parser.parse_args(argv)
    if not (REPO / "jobs" / f"{args.job}.py").is_file():
        parser.error(f"--job: no jobs/{args.job}.py")
    if not args.base.name.startswith(DEFAULT_BASE.name):
        # the folder is deleted before and after the check: never a folder of anything else
        parser.error(f"--base: the folder's name must start with '{DEFAULT_BASE.name}', got {args.base}")
    base, marker = args.base.resolve(), str(args.base.resolve())
    if args.stop_only:
        stop_cluster(marker)
        return 0
    os.nice(max(0, 19 - os.nice(0)))  # two cores shared with other people's work
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below on SIGTERM too
    stop_cluster(marker)  # leftovers of a killed earlier check
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    rc = 1
    try:
        rc = run_check(args.job, base, args.timeout)
    finally:
        stop_cluster(marker)
    if rc == 0 and not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    elif rc:
        print(f"[two-node] logs: {base}/head/session_latest/logs, run: {base}/run")
    return rc


if __name__ == "__main__":
    sys.exit(main())
