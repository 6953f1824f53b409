"""The cluster path end to end: a two-node Ray cluster on this machine (its own ports and temp
dir, beside any other local Ray), the tiny pipeline submitted with `ray job submit --working-dir .`,
the run directory checked, and only that cluster's processes stopped (scripts/two_node_check.py)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "two_node_check.py"


def _script_module():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import two_node_check
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return two_node_check


def test_cleanup_finds_the_clusters_processes_and_their_children_only(tmp_path):
    """Found: a process naming the temp dir, its child (whose command line does not), a process
    carrying the tag in its environment. Not found: a bystander, this process and its ancestors."""
    check = _script_module()
    marker = str(tmp_path / "ems-two-node")
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                               f"subprocess.Popen({sleeper!r}); time.sleep(60)", marker])
    tagged = subprocess.Popen(sleeper, env={**os.environ, check.TAG_VAR: marker})
    bystander = subprocess.Popen(sleeper)
    try:
        deadline = time.monotonic() + 20
        while len(found := check.cluster_processes(marker)) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert {parent.pid, tagged.pid} <= found and len(found) == 3
        assert bystander.pid not in found
        check.stop_cluster(marker, log=lambda s: None, grace_s=2)
        assert parent.wait(timeout=10) is not None and tagged.wait(timeout=10) is not None
        assert not check.cluster_processes(marker)
        assert bystander.poll() is None
    finally:
        for p in (parent, tagged, bystander):
            p.kill()
            p.wait()


def test_tiny_config_validates(tmp_path):
    from ems_ray.config import RunConfig
    from ems_ray.pipeline.runner import preflight

    preflight(RunConfig.model_validate(_script_module().tiny_config(tmp_path / "run")))


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_pipeline_job_on_a_two_node_cluster(tmp_path):
    # the base dir lives in /tmp: Ray's socket paths must stay under 107 characters
    out = subprocess.run([sys.executable, str(SCRIPT), "--base", "/tmp/ems-two-node-test"],
                         cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-6000:]
    assert "[two-node] OK" in out.stdout
