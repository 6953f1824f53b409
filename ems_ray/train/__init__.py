"""Progressive-shrinking super-network training: a pure PyTorch loop and its Ray Train adapter."""
from .config import EvalConfig, PhaseConfig, SupernetTrainConfig
from .progressive import LoopInputs, TrainSession, train_supernet
from .stage import run_supernet_stage

__all__ = ["EvalConfig", "LoopInputs", "PhaseConfig", "SupernetTrainConfig", "TrainSession",
           "run_supernet_stage", "train_supernet"]
