"""The package structure: imports that point downwards, light config imports, lazy package
namespaces that resolve, one way of setting dotted keys."""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from ems_ray.dotted import set_dotted
from ems_ray.errors import InputError

PACKAGES = ("collect", "data", "final", "hardware", "pipeline", "predictor", "quant", "report", "search", "space",
            "supernet", "train")
STAGE_PACKAGES = tuple(p for p in PACKAGES if p != "pipeline")
# what composes the stages: a stage package that imported one of these would import upwards
ABOVE_THE_STAGES = ("ems_ray.config", "ems_ray.pipeline", "ems_ray.cli")
ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "ray", "optuna", "pyarrow", "onnx", "numpy")


def imported_modules(path: Path, module: str) -> set[str]:
    """Every module the file `path` (module `module`) imports, wherever the import stands: at the top,
    in a function, under `if TYPE_CHECKING:`; relative imports resolved, and `from a import b` counted
    as both `a` and `a.b` (b may be a module)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _is_under(name: str, modules: tuple[str, ...]) -> bool:
    return any(name == m or name.startswith(m + ".") for m in modules)


def test_the_import_parser_sees_type_checking_function_and_relative_imports(tmp_path):
    path = tmp_path / "stage.py"
    path.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ems_ray.config import RunConfig\n"
                    "def f():\n    from ...pipeline import stages\n    import ems_ray.cli\nfrom . import plan\n")
    found = imported_modules(path, "ems_ray.collect.sub.stage")
    assert {"ems_ray.config", "ems_ray.pipeline.stages", "ems_ray.cli", "ems_ray.collect.sub.plan"} <= found
    assert all(_is_under(m, ABOVE_THE_STAGES) for m in ("ems_ray.config", "ems_ray.pipeline.stages", "ems_ray.cli"))


@pytest.mark.parametrize("package", STAGE_PACKAGES)
def test_stage_packages_import_downwards_only(package):
    """A stage takes its own config section and the run's `RunContext`, never the whole `RunConfig`:
    no module of a stage package imports the run config, the pipeline or the CLI, not even for types."""
    upward = []
    for path in sorted((ROOT / "ems_ray" / package).rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        upward += [f"{module} imports {name}" for name in sorted(imported_modules(path, module))
                   if _is_under(name, ABOVE_THE_STAGES)]
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize("module", ["ems_ray.run_context", "ems_ray.ray_session", "ems_ray.run_layout"])
def test_shared_modules_below_the_stages_do_not_import_above_them(module):
    path = ROOT / Path(*module.split(".")).with_suffix(".py")
    assert not [name for name in imported_modules(path, module) if _is_under(name, ABOVE_THE_STAGES)]


@pytest.mark.parametrize("code", [
    "import ems_ray.config",
    "from ems_ray.cli import build_parser; build_parser().format_help()",  # what `ems-ray --help` runs
])
def test_the_config_and_the_command_line_load_without_torch_ray_or_numpy(code):
    probe = f"import sys; {code}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


def test_loading_a_config_imports_neither_torch_nor_ray_nor_numpy():
    code = ("import sys; from ems_ray.config import load_run_config; "
            "load_run_config('configs/fmnist-full.yaml').search_space(); "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
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
