"""Every run config shipped in `configs/` validates and keeps the invariants runs rely on.

Parametrized over the folder, so a new config is covered without editing this file. Configs are
loaded from the repository root, as a Ray job runs them (space files are named relative to it).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest

from ems_ray.config import ConfigError, RunConfig, load_run_config
from ems_ray.hardware import BitFusionModel, subnet_layers
from ems_ray.pipeline.stages import run_budgets
from ems_ray.search.config import Budget
from ems_ray.space import Genome, resolve_space

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    monkeypatch.chdir(REPO)


@lru_cache(maxsize=None)
def _config(path: Path) -> RunConfig:
    return load_run_config(path)


@lru_cache(maxsize=None)
def _cost_range(space_spec: str) -> tuple[dict, dict]:
    """BitFusion costs of the cheapest (smallest, 4-bit) and dearest (largest, 8-bit) sub-nets."""
    space = resolve_space(space_spec)
    genome, model = Genome(space), BitFusionModel()
    lo, hi = (model.network_cost(subnet_layers(space, genome.to_config(g)))
              for g in (genome.smallest(min(space.bits.pw_w)), genome.largest(max(space.bits.pw_w))))
    return lo, hi


def test_the_issues_configs_are_shipped():
    assert {"fmnist-quick", "fmnist-full", "cifar10", "imagenet-apq"} <= {p.stem for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_validates_and_names_its_run(path):
    cfg = _config(path)
    assert cfg.name == path.stem, "a config's name is its file name"
    assert Path(cfg.run_dir).name == cfg.name, "run_dir ends in the config's name (runs/<name>)"
    cfg.search_space()  # preset or space file resolves


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_budgets_parse_and_are_reachable(path):
    cfg = _config(path)
    budgets = run_budgets(cfg)
    assert budgets, "the pipeline searches and measures at least one budget (final.budgets)"
    if cfg.search.budget is not None:
        assert Budget.parse(cfg.search.budget) in budgets, "search.budget is one of final.budgets"
    lo, hi = _cost_range(cfg.space)
    for budget in budgets:
        for key, limit in budget.limits().items():
            # below the cheapest sub-net nothing fits; above the dearest the budget constrains nothing
            assert lo[key] < limit < hi[key], f"{budget.describe()}: {key} not in ({lo[key]:.4g}, {hi[key]:.4g})"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_cluster_configs_keep_results_and_data_on_shared_paths(path):
    """A config that joins a cluster runs as a Ray job, whose relative paths resolve inside the
    job's temporary copy of the working directory: results written there are lost."""
    cfg = _config(path)
    if cfg.ray.address is None:
        pytest.skip("a local-Ray config")
    assert Path(cfg.run_dir).is_absolute(), "run_dir must be on storage every node sees"
    assert cfg.data.root is not None and Path(cfg.data.root).is_absolute()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_gpu_configs_ask_for_gpus_in_every_distributed_stage(path):
    cfg = _config(path)
    if not cfg.supernet.use_gpu:
        pytest.skip("a CPU config")
    assert cfg.collect.resources.num_gpus > 0
    assert cfg.final.resources.num_gpus > 0


def test_a_bad_budget_names_the_field():
    with pytest.raises(ConfigError, match=r"final\.budgets.*latency=fast"):
        load_run_config(CONFIG_DIR / "fmnist-quick.yaml", {"final.budgets": ["latency=fast"]})
