"""The `ems-ray` command, the run configs it reads, and the README's set-up contract."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from ems_ray.cli import build_parser, main
from ems_ray.config import ConfigError, load_run_config

ROOT = Path(__file__).resolve().parents[1]


def test_space_show(capsys):
    assert main(["space", "show", "--preset", "apq-imagenet"]) == 0
    out = capsys.readouterr().out
    assert "21 block slots" in out and "520 FP + 252 quant = 772 features" in out


def test_lut_build_writes_table_and_summary(tmp_path, capsys):
    assert main(["lut", "build", "--preset", "fmnist-small", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "lut-fmnist-small.parquet").is_file()
    assert "fmnist-small" in capsys.readouterr().out


def test_unknown_preset_is_one_clear_line(capsys):
    assert main(["lut", "build", "--preset", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown search-space preset 'nope'" in err and "Traceback" not in err


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    cfg = load_run_config(path)
    assert cfg.search_space().name == cfg.space


def test_invalid_config_names_fields(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\nrun_dir: runs/x\nspace: fmnist-small\n"
        "data: {name: mnist}\n"
        "supernet: {phases: [{name: full, epochs: 0, lr: 0.1, distill: false}]}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_run_config(bad)
    text = str(err.value)
    assert "data.name" in text and "fashion-mnist" in text
    assert "supernet.phases.0.epochs" in text


def test_config_errors_for_missing_file_and_bad_space(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_run_config(tmp_path / "missing.yaml")
    cfg = ROOT / "configs" / "fmnist-quick.yaml"
    with pytest.raises(ConfigError, match="space: unknown search-space preset 'imagenet-huge'"):
        load_run_config(cfg, {"space": "imagenet-huge"})


def test_readme_commands_and_ci_agree():
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/run.sh" in readme and "bash scripts/test.sh" in readme
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
    # the main job's default command is a valid `ems-ray` invocation
    run = (ROOT / "scripts" / "run.sh").read_text()
    line = re.search(r"^exec \.venv/bin/ems-ray (.+)$", run, re.M).group(1)
    build_parser().parse_args(shlex.split(line))


def test_an_interrupt_ends_with_how_to_resume_not_a_traceback(monkeypatch, capsys):
    from ems_ray import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_pipeline", interrupted)
    assert cli.main(["pipeline", "--config", "configs/fmnist-quick.yaml"]) == 130
    assert "pipeline interrupted; run the same command again to resume" in capsys.readouterr().err


def test_set_overrides_any_config_value_and_rejects_a_malformed_pair(tmp_path, capsys):
    from ems_ray.cli import build_parser, config_from_args, main

    args = build_parser().parse_args(["pipeline", "--config", "configs/fmnist-quick.yaml", "--set",
                                      f"run_dir={tmp_path}/x", "--set", "final.budgets=[latency=0.3ms]"])
    cfg = config_from_args(args)
    assert str(cfg.run_dir) == f"{tmp_path}/x" and cfg.final.budgets == ["latency=0.3ms"]
    assert main(["pipeline", "--config", "configs/fmnist-quick.yaml", "--set", "seed"]) == 2
    assert "--set: expected key=value" in capsys.readouterr().err


@pytest.mark.parametrize("debug", ["flag", "env", None])
def test_a_bug_is_an_internal_error_not_an_input_error(monkeypatch, capsys, debug):
    from ems_ray import cli

    def buggy(args):
        raise RuntimeError("list index out of range in a stage")

    monkeypatch.setattr(cli, "_cmd_pipeline", buggy)
    argv = ["pipeline", "--config", "configs/fmnist-quick.yaml"]
    if debug == "flag":
        argv.append("--debug")
    monkeypatch.setenv("EMS_RAY_DEBUG", "1" if debug == "env" else "")
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "ems-ray: internal error in 'pipeline': RuntimeError: list index out of range" in err
    assert ("Traceback" in err) == (debug is not None)
    assert ("--debug" in err) == (debug is None)


def test_input_errors_stay_one_line_with_exit_2(monkeypatch, capsys):
    from ems_ray import cli
    from ems_ray.errors import InputError

    def bad_input(args):
        raise InputError("search.algorithm: 'x' not allowed; allowed values: ['evolution']")

    monkeypatch.setattr(cli, "_cmd_pipeline", bad_input)
    assert cli.main(["pipeline", "--config", "configs/fmnist-quick.yaml", "--debug"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "ems-ray: error: search.algorithm: 'x' not allowed; allowed values: ['evolution']"


@pytest.mark.parametrize("pair, message", [
    ("seed.x=1", "seed.x: seed is 0, which has no 'x'"),
    ("supernet.phases.9.epochs=1", "supernet.phases.9.epochs: supernet.phases is a list of"),
])
def test_set_errors_are_named_lines_not_tracebacks(pair, message, capsys):
    assert main(["pipeline", "--config", "configs/fmnist-quick.yaml", "--set", pair]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
