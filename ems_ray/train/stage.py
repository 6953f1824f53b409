"""The super-network stage of a run: train (or resume) into `<run_dir>/supernet/`.

Takes the run's shared settings (`RunContext`: space, data, seed, Ray) and its `supernet` section."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ems_ray.artifacts import json_digest
from ems_ray.console import current_verbosity
from ems_ray.data import build_splits
from ems_ray.errors import InputError
from ems_ray.space import space_fingerprint
from ems_ray.supernet.checkpoint import SupernetFileError, read_supernet_file, save_supernet, trained_phases

from .checkpoints import LocalSession
from .config import SupernetTrainConfig
from .progressive import InitialWeights, LoopInputs, train_supernet

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ems_ray.run_context import RunContext


def schedule_fingerprint(run: RunContext, train: SupernetTrainConfig) -> str:
    """What makes two runs the same training run (resources may change between resumes)."""
    keep = {"space": run.search_space().model_dump(mode="json"), "seed": run.seed,
            "data": run.data.model_dump(mode="json"),
            "train": train.model_dump(mode="json", exclude={"workers", "use_gpu", "cpus_per_worker",
                                                                   "max_failures", "threads_per_worker"})}
    return json_digest(keep)


def run_supernet_stage(run: RunContext, train: SupernetTrainConfig, use_ray: bool = True) -> Path:
    """Train the super network unless `<run_dir>/supernet/supernet.pt` already exists and verifies
    (a damaged one fails with SupernetFileError and is left as it is)."""
    layout = run.layout
    out, final = layout.supernet_dir, layout.supernet
    if final.is_file():
        read_supernet_file(final)
        logger.info(f"[train] {final} exists: stage already done")
        return final
    space = run.search_space()
    build_splits(run.data)  # fail on missing data before any worker starts
    initial = continued_weights(train, space) if train.continue_from else None
    fingerprint = schedule_fingerprint(run, train)
    marker = layout.supernet_schedule
    if marker.is_file() and json.loads(marker.read_text())["fingerprint"] != fingerprint:
        raise InputError(
            f"{out} holds a training run with a different space/data/schedule; "
            "use another run_dir, or delete that folder to start over"
        )
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"fingerprint": fingerprint}))
    inputs = LoopInputs(space=space, data=run.data, train=train, seed=run.seed, verbosity=current_verbosity(),
                        initial=initial)
    checkpoints = LocalSession(layout.supernet_checkpoints)
    state = checkpoints.restore()
    if state is not None and state["epoch"] == train.total_epochs - 1:
        logger.info(f"[train] the last epoch's checkpoint exists: writing {final} from it")
    elif use_ray:
        from ems_ray.ray_session import ray_session

        from .ray_trainer import fit_on_ray

        with ray_session(run.ray):
            state = fit_on_ray(inputs, storage=layout.supernet_ray, mirror=layout.supernet_checkpoints.resolve())
    else:
        state = train_supernet(inputs, checkpoints)
    layout.supernet_history.write_text(json.dumps(state["history"], indent=1))
    phases = [{"name": p.name, "quantize": p.quantize} for p in train.phases]
    save_supernet(final, space, state["model"], {"fingerprint": fingerprint, "final": state["history"][-1],
                                                 "phases": phases, "quantization_aware": any(p.quantize for p in train.phases)})
    logger.info(f"[train] wrote {final}")
    return final


def continued_weights(train: SupernetTrainConfig, space) -> InitialWeights:
    """The weights of `train.continue_from`, checked to be this space's and an earlier stage of this
    schedule (its phases, by name, are the leading phases of `train.phases`, and some are left)."""
    path = Path(train.continue_from)
    blob = read_supernet_file(path)
    if blob["space_fingerprint"] != space_fingerprint(space):
        raise SupernetFileError(f"supernet.continue_from: {path} was trained for search space '{blob['space_name']}', "
                                f"not for '{space.name}'")
    done = trained_phases(blob)
    names = [p.name for p in train.phases]
    if not done:
        raise SupernetFileError(f"supernet.continue_from: {path} records no training phases; cannot tell where to continue")
    mismatched = [i for i, p in enumerate(done) if i >= len(names) or (p["name"] is not None and p["name"] != names[i])]
    if mismatched or len(done) >= len(names):
        raise InputError(
            f"supernet.continue_from: {path} was trained with phases {[p['name'] for p in done]}; supernet.phases "
            f"{names} must start with them (by name) and add at least one more")
    return InitialWeights(state_dict=blob["state_dict"], phases_done=len(done))
