"""Progressive-shrinking super-network training: a pure PyTorch loop and its Ray Train adapter.

The run's stage is `run_supernet_stage(run, supernet_config)`: the run's `RunContext`
(`RunConfig.context()`) and its `supernet` section.
"""
from ems_ray._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".config": ("EvalConfig", "PhaseConfig", "SupernetTrainConfig"),
    ".progressive": ("LoopInputs", "TrainSession", "train_supernet"),
    ".stage": ("run_supernet_stage",),
})
