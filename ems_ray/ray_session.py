"""Connect to a Ray cluster, or start a local one sized by the config, and shut down what we start.

A local Ray listens on loopback only. On Linux, Ray turns a node address of 127.0.0.1 into the
machine's own address, and its gRPC servers (GCS, raylet, workers), agents and Prometheus
metrics endpoint then listen on every interface. Ray keeps a node on 127.0.0.1 only where it
treats multi-node clusters as off (its macOS/Windows default), switched by
`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`; `local_only_ray` sets it for the local session and restores
it afterwards, so a later connection to a real cluster reports the machine's address again
(tests/test_ray_network.py lists the sockets).

Ray starts its worker processes at niceness 15 (its `worker_niceness`), below its own daemons and
the driver at 0. On a machine with few cores the dashboard, raylet and driver then take CPU from
the workers that train or measure: a progressive-shrinking step ran at 0.89 of the plain loop
inside Ray Train (docs/BENCHMARKS.md). A local Ray here starts its workers at niceness 0
(`WORKER_NICENESS`, `ray.worker_niceness` in a run config); a cluster sets it per node with
`RAY_worker_niceness=0` in `ray start`'s environment (cluster/).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from ems_ray.run_context import RayConfig

# Ray's switch for multi-node clusters; "0" keeps every node of this machine on 127.0.0.1
CLUSTER_SWITCH_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOOPBACK = "127.0.0.1"
# niceness of a local Ray's workers (Ray's default: 15)
WORKER_NICENESS = 0


@contextmanager
def local_only_ray() -> Iterator[None]:
    """While open, Ray started here (and the processes it starts) takes 127.0.0.1 as the node
    address and binds there. Ray reads the switch once, at import, into `ray_constants`; the
    processes it starts read the environment."""
    from ray._private import ray_constants

    saved_env, saved_flag = os.environ.get(CLUSTER_SWITCH_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[CLUSTER_SWITCH_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(CLUSTER_SWITCH_ENV, None)
        else:
            os.environ[CLUSTER_SWITCH_ENV] = saved_env


@contextmanager
def local_ray(**init_kwargs: Any) -> Iterator[None]:
    """A one-machine Ray on loopback (`ray.init(**init_kwargs)`, dashboard on 127.0.0.1 unless
    given), shut down on exit. For the pipeline, the test session and benchmarks alike."""
    import ray

    init_kwargs.setdefault("dashboard_host", LOOPBACK)
    system = {"worker_niceness": WORKER_NICENESS, **init_kwargs.pop("_system_config", {})}
    with local_only_ray():
        ray.init(_node_ip_address=LOOPBACK, _system_config=system, **init_kwargs)
        try:
            yield
        finally:
            ray.shutdown()


@contextmanager
def ray_session(cfg: RayConfig) -> Iterator[None]:
    """Reuse an initialised Ray, else join `cfg.address`/`RAY_ADDRESS`, else start a local Ray
    (explicit CPUs, loopback only)."""
    import ray

    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
        try:
            yield
        finally:
            ray.shutdown()
        return
    with local_ray(num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, include_dashboard=cfg.include_dashboard,
                   dashboard_host=cfg.dashboard_host, _system_config={"worker_niceness": cfg.worker_niceness}):
        yield
