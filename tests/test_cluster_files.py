"""The cluster files and job entry points: the launcher YAML passes Ray's own schema, the KubeRay
manifest has what the operator and the pipeline need, every job script reaches its `ems-ray`
command, and `ray job submit --working-dir .` leaves results and environments behind."""
from __future__ import annotations

import copy
import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import ray
import yaml

REPO = Path(__file__).resolve().parent.parent
LAUNCHER = REPO / "cluster" / "ems-ray-cluster.yaml"
KUBERAY = REPO / "cluster" / "kuberay-rayjob.yaml"
DOCKERFILE = REPO / "cluster" / "Dockerfile"
CLUSTER_DOC = REPO / "docs" / "cluster.md"
JOB_SCRIPTS = sorted(p for p in (REPO / "jobs").glob("*.py") if not p.name.startswith("_"))
STAGE_COMMANDS = {"pipeline", "train-supernet", "collect", "train-predictor", "search", "compare-searchers",
                  "export"}


def _image_tag(image: str) -> str:
    return image.rsplit(":", 1)[1]


def _dockerfile(instruction: str) -> str:
    """The argument of the Dockerfile's first `instruction` line (FROM, WORKDIR)."""
    lines = DOCKERFILE.read_text().splitlines()
    return next(line.split()[1] for line in lines if line.startswith(instruction + " "))


def _gpus(group: dict) -> int:
    return int(group["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0))


# ---- Ray cluster launcher ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def launcher() -> dict:
    return yaml.safe_load(LAUNCHER.read_text())


def test_launcher_passes_rays_schema(launcher):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(launcher)))  # what `ray up` runs first


def test_launcher_schema_check_rejects_a_misspelt_field(launcher):
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    bad = copy.deepcopy(launcher)
    bad["available_node_types"]["ray.worker.gpu"]["min_worker"] = 0
    with pytest.raises(jsonschema.ValidationError, match="min_worker"):
        validate_config(prepare_config(bad))


def test_launcher_has_a_cpu_head_and_gpu_workers_from_zero(launcher):
    types = launcher["available_node_types"]
    head = types[launcher["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    gpu = {name: t for name, t in types.items() if t["resources"].get("GPU", 0) > 0}
    assert gpu, "a GPU worker type"
    for name, t in gpu.items():
        assert t["min_workers"] == 0 and t["max_workers"] >= 1, name
        assert t["max_workers"] <= launcher["max_workers"], name


def test_launcher_binds_the_dashboard_to_localhost(launcher):
    head_start = " ".join(launcher["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "0.0.0.0" not in head_start


def test_launcher_installs_this_package_and_mounts_shared_storage(launcher):
    target, source = next((t, s) for t, s in launcher["file_mounts"].items() if s == ".")
    assert (REPO / source / "pyproject.toml").is_file()  # `ray up` runs from the repository root
    assert any("pip install" in c and target in c for c in launcher["setup_commands"])
    assert any("/mnt/shared" in c for c in launcher["initialization_commands"])
    assert any("/mnt/shared:/mnt/shared" in o for o in launcher["docker"]["run_options"])


def test_launcher_names_a_current_ami_per_node_type(launcher):
    text = LAUNCHER.read_text()
    for name, node_type in launcher["available_node_types"].items():
        image = node_type["node_config"].get("ImageId", "")
        # empty or latest_dlami: Ray 2.60 fills in its "Deep Learning AMI (Ubuntu 18.04) V71.0"
        assert image and image.lower() != "latest_dlami", name
        if image.startswith("resolve:ssm:"):  # EC2 resolves a public SSM parameter at launch
            parameter = image.removeprefix("resolve:ssm:")
            assert re.fullmatch(r"/aws/service/deeplearning/ami/x86_64/[a-z0-9.-]+-ubuntu-2[2-9]\.04/latest/ami-id",
                                parameter), f"{name}: {parameter}"
            assert f"--name {parameter}" in text, "the lookup command names the same parameter"
        else:
            assert re.fullmatch(r"ami-[0-9a-f]{8,17}", image), f"{name}: {image}"
    assert "aws ssm get-parameter" in text


def test_launcher_installs_the_nfs_client_before_mounting(launcher):
    commands = launcher["initialization_commands"]
    install = next(i for i, c in enumerate(commands) if "install" in c and "nfs-common" in c)
    mount = next(i for i, c in enumerate(commands) if "mount -t nfs4" in c)
    assert install < mount


def test_launcher_images_carry_the_installed_ray(launcher):
    docker = launcher["docker"]
    for key in ("image", "head_image"):
        assert _image_tag(docker[key]).startswith(ray.__version__ + "-"), key


# ---- KubeRay ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kuberay() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(KUBERAY.read_text())}


def _pod_specs(cluster: dict) -> list[tuple[str, dict]]:
    return [("head", cluster["headGroupSpec"]["template"]["spec"])] + [
        (g["groupName"], g["template"]["spec"]) for g in cluster["workerGroupSpecs"]]


def test_rayjob_structure(kuberay):
    job = kuberay["RayJob"]
    assert job["apiVersion"] == "ray.io/v1"
    assert job["metadata"]["name"]
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    cluster = spec["rayClusterSpec"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["headGroupSpec"]["rayStartParams"] is not None
    for name, pod in _pod_specs(cluster):
        assert pod["containers"] and all(c["name"] and c["image"] for c in pod["containers"]), name


def test_rayjob_gpu_workers_scale_from_zero(kuberay):
    cluster = kuberay["RayJob"]["spec"]["rayClusterSpec"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]
    assert "nvidia.com/gpu" not in head.get("limits", {})
    gpu_groups = [g for g in cluster["workerGroupSpecs"] if _gpus(g) > 0]
    assert gpu_groups, "a GPU worker group"
    for g in gpu_groups:
        assert g["minReplicas"] == 0 and g["replicas"] == 0 < g["maxReplicas"], g["groupName"]
        res = g["template"]["spec"]["containers"][0]["resources"]
        assert res["requests"]["nvidia.com/gpu"] == res["limits"]["nvidia.com/gpu"]  # Kubernetes requires it


def test_rayjob_enables_token_authentication(kuberay):
    cluster = kuberay["RayJob"]["spec"]["rayClusterSpec"]
    assert cluster["authOptions"]["mode"] == "token"  # KubeRay >= 1.5.1: Secret, env, operator's client
    for name, pod in _pod_specs(cluster):
        for c in pod["containers"]:  # an operator that dropped authOptions fails closed: no token, no start
            assert {"name": "RAY_AUTH_MODE", "value": "token"} in c.get("env", []), name
    doc = CLUSTER_DOC.read_text()
    assert "authOptions" in doc and "RAY_AUTH_TOKEN=$(kubectl get secret" in doc  # how a user submits


def _autoscaler_choice(cluster_spec: dict, demand: list[dict]) -> dict[str, int]:
    """The worker pods Ray's autoscaler starts for `demand`, on the node types it derives from the
    manifest as KubeRay's in-tree autoscaler does."""
    from functools import partial

    from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr
    from ray.autoscaler._private.node_provider_availability_tracker import NodeAvailabilitySummary
    from ray.autoscaler._private.resource_demand_scheduler import _default_utilization_scorer, get_nodes_for

    config = _derive_autoscaling_config_from_ray_cr({"metadata": {"name": "ems-ray", "namespace": "default"},
                                                     "spec": cluster_spec})
    scorer = partial(_default_utilization_scorer, node_availability_summary=NodeAvailabilitySummary({}))
    to_add, unmet = get_nodes_for(config["available_node_types"], {}, config["head_node_type"],
                                  config["max_workers"], demand, scorer)
    assert not unmet, unmet
    return dict(to_add)


def test_rayjob_cpu_only_trials_start_no_gpu_pod(kuberay):
    cluster = kuberay["RayJob"]["spec"]["rayClusterSpec"]
    cpu_groups = [g["groupName"] for g in cluster["workerGroupSpecs"] if _gpus(g) == 0]
    assert cpu_groups, "a CPU worker group"
    gpu_group = next(g["groupName"] for g in cluster["workerGroupSpecs"] if _gpus(g) > 0)
    tune_trial = {"CPU": 0.01}  # fit_tune's trial resources (compare-searchers, search on Tune)
    assert set(_autoscaler_choice(cluster, [tune_trial])) <= set(cpu_groups)
    assert set(_autoscaler_choice(cluster, [{"CPU": 1}] * 8)) <= set(cpu_groups)  # predictor trials
    assert set(_autoscaler_choice(cluster, [{"CPU": 8, "GPU": 1}])) == {gpu_group}
    gpu_only = {**cluster, "workerGroupSpecs": [g for g in cluster["workerGroupSpecs"] if _gpus(g) > 0]}
    assert set(_autoscaler_choice(gpu_only, [tune_trial])) == {gpu_group}  # what the CPU group prevents


def test_rayjob_cluster_lifetime_matches_the_docs(kuberay):
    spec = kuberay["RayJob"]["spec"]
    ttl = spec["ttlSecondsAfterFinished"]
    doc = " ".join(CLUSTER_DOC.read_text().split())
    assert spec["shutdownAfterJobFinishes"] is True
    assert f"`ttlSecondsAfterFinished: {ttl}`" in doc
    assert f"deleted {ttl // 60} minutes after the job ends" in doc and "deleted when the job ends" not in doc


def test_rayjob_ray_version_is_the_installed_one(kuberay):
    cluster = kuberay["RayJob"]["spec"]["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__
    for name, pod in _pod_specs(cluster):
        for c in pod["containers"]:
            assert _image_tag(c["image"]).startswith(ray.__version__ + "-"), name
    assert _image_tag(_dockerfile("FROM")).startswith(ray.__version__ + "-")


def test_rayjob_entrypoint_runs_a_shipped_config_onto_the_shared_volume(kuberay, monkeypatch):
    from ems_ray.cli import build_parser, config_from_args

    monkeypatch.chdir(REPO)  # the job's working directory is a copy of the checkout
    job, claim = kuberay["RayJob"], kuberay["PersistentVolumeClaim"]
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["python", "jobs/pipeline.py"] and (REPO / argv[1]).is_file()
    cfg = config_from_args(build_parser().parse_args(["pipeline", *argv[2:]]))
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    for name, pod in _pod_specs(job["spec"]["rayClusterSpec"]):
        volumes = {v["name"] for v in pod["volumes"]
                   if v.get("persistentVolumeClaim", {}).get("claimName") == claim["metadata"]["name"]}
        mounts = [m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])
                  if m["name"] in volumes]
        assert mounts, f"{name} mounts the shared claim"
        for path in (cfg.run_dir, cfg.data.root):
            assert any(Path(path).is_relative_to(m) for m in mounts), f"{path}: not on the shared volume in {name}"


def test_rayjob_uploads_the_images_checkout(kuberay):
    working_dir = yaml.safe_load(kuberay["RayJob"]["spec"]["runtimeEnvYAML"])["working_dir"]
    assert working_dir == _dockerfile("WORKDIR")



def test_dockerfile_gives_the_checkout_to_user_ray():
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines() if line.strip() and line[0] != "#"]
    workdir = _dockerfile("WORKDIR")
    made = next(i for i, line in enumerate(lines) if line.startswith("RUN") and workdir in line
                and re.search(r"install -d -o ray -g users|chown ray:users", line))
    assert made < lines.index(f"WORKDIR {workdir}")  # not left to the builder's WORKDIR
    assert [line for line in lines if line.startswith("USER")][-1] == "USER ray"
    assert all(line.startswith("COPY --chown=ray:users ") for line in lines if line.startswith("COPY"))


# ---- job entry points -------------------------------------------------------------------------

def _command(script: Path) -> str:
    return script.stem.replace("_", "-")


def test_jobs_cover_every_stage():
    assert STAGE_COMMANDS <= {_command(s) for s in JOB_SCRIPTS}


@pytest.mark.parametrize("script", JOB_SCRIPTS, ids=lambda p: p.stem)
def test_job_script_forwards_to_its_command(script, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(script.parent))
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(script), run_name="__main__")
    assert exit_info.value.code == 0
    assert f"usage: ems-ray {_command(script)} " in capsys.readouterr().out


def test_job_script_runs_from_another_directory(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "jobs" / "pipeline.py"), "--config", "missing.yaml"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr  # the CLI's own error, not an ImportError
    assert "config file not found: missing.yaml" in out.stderr


def test_ensure_importable_puts_the_checkout_first(monkeypatch):
    sys.path.insert(0, str(REPO / "jobs"))
    try:
        from _entrypoint import ensure_importable
    finally:
        sys.path.remove(str(REPO / "jobs"))
    monkeypatch.setattr(sys, "path", ["/somewhere/else", str(REPO)])
    ensure_importable()
    assert sys.path[0] == str(REPO)
    ensure_importable()
    assert sys.path.count(str(REPO)) == 2  # inserted once, in front of the later entry


# ---- what `ray job submit --working-dir .` uploads --------------------------------------------

@pytest.mark.parametrize("honour_gitignore", [True, False],
                         ids=["gitignore", "RAY_RUNTIME_ENV_IGNORE_GITIGNORE"])
def test_working_dir_upload_leaves_results_and_environments(honour_gitignore):
    from ray._private.runtime_env.packaging import _dir_travel

    uploaded: list[str] = []
    _dir_travel(REPO, [], lambda p: uploaded.append(p.relative_to(REPO).as_posix()),
                include_gitignore=honour_gitignore)
    tops = {p.split("/")[0] for p in uploaded}
    assert not tops & {"runs", "results", "logs", "data", ".venv", ".git"}
    assert not any("__pycache__" in p for p in uploaded)
    for needed in ("jobs/pipeline.py", "jobs/_entrypoint.py", "ems_ray/cli.py", "configs/fmnist-quick.yaml",
                   "ems_ray/space/presets/cifar10.yaml", "pyproject.toml"):
        assert needed in uploaded
