"""The package structure: light config imports, lazy package namespaces that resolve, one way of
setting dotted keys."""
from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from ems_ray.dotted import set_dotted
from ems_ray.errors import InputError

PACKAGES = ("collect", "data", "final", "hardware", "pipeline", "predictor", "quant", "report", "search", "space",
            "supernet", "train")


def test_loading_a_config_imports_neither_torch_nor_ray_nor_numpy():
    code = ("import sys; from ems_ray.config import load_run_config; "
            "load_run_config('configs/fmnist-full.yaml').search_space(); "
            "print(sorted(m for m in ('torch', 'ray', 'optuna', 'pyarrow', 'onnx', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_of_a_package_resolves(package):
    module = importlib.import_module(f"ems_ray.{package}")
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing and set(module.__all__) <= set(dir(module))


def test_set_dotted_creates_descends_lists_and_names_bad_keys():
    tree = {"supernet": {"phases": [{"epochs": 3}]}, "seed": 0}
    set_dotted(tree, "supernet.phases.0.epochs", 1)
    set_dotted(tree, "final.budgets", ["latency=1ms"])
    assert tree["supernet"]["phases"][0]["epochs"] == 1 and tree["final"] == {"budgets": ["latency=1ms"]}
    with pytest.raises(InputError, match="seed.x: seed is 0, which has no 'x'"):
        set_dotted(tree, "seed.x", 1)
    with pytest.raises(InputError, match="is a list of 1; '3' is not an index"):
        set_dotted(tree, "supernet.phases.3.epochs", 1)
    with pytest.raises(InputError, match="unknown setting"):
        set_dotted(tree, "supernet.nope", 1, create=False)
