"""Data collection (paper sections 3.2 and 4): measured (sub-net, policy, accuracy, cost) points.

    plan = SamplingPlan(space, "quant", seed=0)          # deterministic sample ids and gene rows
    worker = EvaluationWorker(spec, state_dict)          # one super network, loaders built once
    rows = worker(batch)                                 # a batch of planned points → result columns
    run_collect_stage(cfg, "fp")                         # Ray actors → <run_dir>/collect/fp/*.parquet
    read_points("runs/x/collect/fp")                     # one pyarrow table, deduplicated

The Ray layer (`actor_pool.EvaluationActorPool`) is imported only when collection runs on Ray.
"""
from .config import KINDS, ActorResources, CollectConfig
from .plan import FP_BITS, PLAN_VERSION, PlannedSamples, SamplingPlan
from .schema import COLLECT_FORMAT, COLLECT_SCHEMA, to_table
from .shards import CollectError, CorruptShardError, ShardStore, dedupe, read_points
from .stage import CollectSummary, collect_folder, file_sha256, run_collect_stage
from .worker import EvaluationWorker, WorkerSpec, choose_device

__all__ = [
    "COLLECT_FORMAT", "COLLECT_SCHEMA", "FP_BITS", "KINDS", "PLAN_VERSION", "ActorResources", "CollectConfig",
    "CollectError", "CollectSummary", "CorruptShardError", "EvaluationWorker", "PlannedSamples", "SamplingPlan",
    "ShardStore", "WorkerSpec", "choose_device", "collect_folder", "dedupe", "file_sha256", "read_points",
    "run_collect_stage", "to_table",
]
