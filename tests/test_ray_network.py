"""A local Ray listens on loopback only: every TCP listener and bound UDP socket of the processes
Ray starts (GCS, raylet, dashboard, agents, workers, the Prometheus metrics endpoint) is on
127.0.0.1 or ::1, never on 0.0.0.0, :: or the machine's own address."""
from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parent.parent

# Listeners a local Ray may open beyond loopback in this Ray version, each with why: none.
NOT_RESTRICTABLE: dict[str, str] = {}


def bound_sockets(pids: list[int]) -> list[dict]:
    """TCP listeners and unconnected UDP sockets of `pids`: pid, process name, address, port."""
    import psutil  # Ray ships it (ray/thirdparty_files, on sys.path once ray is imported)

    found = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            name = " ".join(proc.cmdline()[:1])[-60:] or proc.name()
            conns = proc.net_connections(kind="inet")
        except psutil.Error:
            continue  # exited meanwhile
        for c in conns:
            if c.status == psutil.CONN_LISTEN or (c.type == 2 and not c.raddr):  # 2: SOCK_DGRAM
                found.append({"pid": pid, "process": name, "ip": c.laddr.ip, "port": c.laddr.port})
    return found


def is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    return (getattr(addr, "ipv4_mapped", None) or addr).is_loopback


def open_beyond_loopback(sockets: list[dict]) -> list[dict]:
    return [s for s in sockets if not is_loopback(s["ip"]) and s["process"] not in NOT_RESTRICTABLE]


def test_loopback_check_flags_wildcard_and_host_addresses():
    sockets = [{"process": "gcs_server", "ip": ip, "port": 1} for ip in
               ("127.0.0.1", "::1", "::ffff:127.0.0.1", "0.0.0.0", "::", "192.0.2.2")]
    assert [s["ip"] for s in open_beyond_loopback(sockets)] == ["0.0.0.0", "::", "192.0.2.2"]


# The pipeline's own path: `ray_session(cfg.ray)` of a shipped config (dashboard on, as by
# default), one task so a worker process runs, then every socket of this process and its children.
_PIPELINE_SESSION = """
import json, os, sys
import ray
from ray._private import ray_constants
import psutil
sys.path.insert(0, sys.argv[1])
from test_ray_network import bound_sockets
from ems_ray.config import load_run_config
from ems_ray.ray_session import CLUSTER_SWITCH_ENV, ray_session


@ray.remote(num_cpus=0)
def worker_pid():
    return os.getpid()

cfg = load_run_config("configs/fmnist-quick.yaml").ray.model_copy(update={"num_cpus": 1})
with ray_session(cfg):
    pid = ray.get(worker_pid.remote())
    node = ray.nodes()[0]
    me = psutil.Process()
    procs = [me, *me.children(recursive=True)]
    out = {"sockets": bound_sockets([p.pid for p in procs]), "worker_pid": pid,
           "node_ip": node["NodeManagerAddress"], "metrics_port": node["MetricsExportPort"],
           "names": sorted({" ".join(p.cmdline()[:1]).rsplit("/", 1)[-1] for p in procs})}
out["switch_restored"] = ray_constants.ENABLE_RAY_CLUSTER and CLUSTER_SWITCH_ENV not in os.environ
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def pipeline_session() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    proc = subprocess.run([sys.executable, "-c", _PIPELINE_SESSION, str(Path(__file__).parent)], cwd=REPO,
                          env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=240)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


def test_pipeline_session_listens_on_loopback_only(pipeline_session):
    sockets = pipeline_session["sockets"]
    assert pipeline_session["node_ip"] == "127.0.0.1"
    # the probe saw Ray's processes, and the servers of each
    names = " ".join(pipeline_session["names"])
    assert "gcs_server" in names and "raylet" in names
    processes = " ".join(s["process"] for s in sockets)
    assert "gcs_server" in processes and "raylet" in processes
    assert any(s["pid"] == pipeline_session["worker_pid"] for s in sockets), "the worker's gRPC server"
    assert any(s["port"] == pipeline_session["metrics_port"] for s in sockets), "the Prometheus endpoint"
    assert len(sockets) >= 6
    assert open_beyond_loopback(sockets) == [], sockets


def test_pipeline_session_restores_rays_cluster_switch(pipeline_session):
    assert pipeline_session["switch_restored"]  # a later ray.init(address=...) reports the host's address


def test_shared_test_session_listens_on_loopback_only(ray_local):
    import psutil

    procs = psutil.Process().children(recursive=True)
    sockets = bound_sockets([p.pid for p in procs])
    assert any("gcs_server" in s["process"] for s in sockets), sockets
    assert open_beyond_loopback(sockets) == [], sockets
