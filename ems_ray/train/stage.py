"""The super-network stage of a run: train (or resume) into `<run_dir>/supernet/`."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ems_ray.artifacts import json_digest
from ems_ray.console import current_verbosity
from ems_ray.data import build_splits
from ems_ray.errors import InputError
from ems_ray.run_layout import RunLayout
from ems_ray.supernet.checkpoint import read_supernet_file, save_supernet

from .checkpoints import LocalSession
from .progressive import LoopInputs, train_supernet

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ems_ray.config import RunConfig

def schedule_fingerprint(cfg: RunConfig) -> str:
    """What makes two runs the same training run (resources may change between resumes)."""
    keep = {"space": cfg.search_space().model_dump(mode="json"), "seed": cfg.seed,
            "data": cfg.data.model_dump(mode="json"),
            "train": cfg.supernet.model_dump(mode="json", exclude={"workers", "use_gpu", "cpus_per_worker",
                                                                   "max_failures", "threads_per_worker"})}
    return json_digest(keep)


def run_supernet_stage(cfg: RunConfig, use_ray: bool = True) -> Path:
    """Train the super network unless `<run_dir>/supernet/supernet.pt` already exists and verifies
    (a damaged one fails with SupernetFileError and is left as it is)."""
    layout = RunLayout.of(cfg)
    out, final = layout.supernet_dir, layout.supernet
    if final.is_file():
        read_supernet_file(final)
        logger.info(f"[train] {final} exists: stage already done")
        return final
    space = cfg.search_space()
    build_splits(cfg.data)  # fail on missing data before any worker starts
    fingerprint = schedule_fingerprint(cfg)
    marker = layout.supernet_schedule
    if marker.is_file() and json.loads(marker.read_text())["fingerprint"] != fingerprint:
        raise InputError(
            f"{out} holds a training run with a different space/data/schedule; "
            "use another run_dir, or delete that folder to start over"
        )
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"fingerprint": fingerprint}))
    inputs = LoopInputs(space=space, data=cfg.data, train=cfg.supernet, seed=cfg.seed, verbosity=current_verbosity())
    checkpoints = LocalSession(layout.supernet_checkpoints)
    state = checkpoints.restore()
    if state is not None and state["epoch"] == cfg.supernet.total_epochs - 1:
        logger.info(f"[train] the last epoch's checkpoint exists: writing {final} from it")
    elif use_ray:
        from ems_ray.ray_session import ray_session

        from .ray_trainer import fit_on_ray

        with ray_session(cfg.ray):
            state = fit_on_ray(inputs, storage=layout.supernet_ray, mirror=layout.supernet_checkpoints.resolve())
    else:
        state = train_supernet(inputs, checkpoints)
    layout.supernet_history.write_text(json.dumps(state["history"], indent=1))
    save_supernet(final, space, state["model"], {"fingerprint": fingerprint, "final": state["history"][-1]})
    logger.info(f"[train] wrote {final}")
    return final
