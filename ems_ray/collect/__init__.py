"""Data collection (paper sections 3.2 and 4): measured (sub-net, policy, accuracy, cost) points.

    plan = SamplingPlan(space, "quant", seed=0)          # deterministic sample ids and gene rows
    worker = EvaluationWorker(spec, state_dict)          # one super network, loaders built once
    rows = worker(batch)                                 # a batch of planned points → result columns
    run_collect_stage(run, collect_cfg, "fp", quant=recipe)  # Ray actors → <run_dir>/collect/fp/*.parquet
    read_points("runs/x/collect/fp")                     # one pyarrow table, deduplicated

Reading order: `config` (the `collect` section), `plan` (which points), `worker` (measuring them,
pure PyTorch), `schema` and `shards` (the Parquet files), `stage` (the run: checks, resume, then
one of the Ray backends or this process). The Ray layer is imported only when collection runs on
Ray: `actor.EvaluationActor` (a worker in an actor) under one of two backends chosen by
`collect.backend` — `ray_dataset.DatasetCollector` (Ray Data `map_batches`, the default) or
`actor_pool.EvaluationActorPool` (the hand-written pool); docs/collection.md compares them.
"""
from ems_ray._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".config": ("BACKENDS", "KINDS", "ActorResources", "CollectConfig"),
    ".plan": ("FP_BITS", "PLAN_VERSION", "PlannedSamples", "SamplingPlan"),
    ".schema": ("COLLECT_FORMAT", "COLLECT_SCHEMA", "to_table"),
    ".shards": ("CollectError", "CorruptShardError", "ShardStore", "dedupe", "read_points", "read_shard",
                "write_shard"),
    ".stage": ("CollectSummary", "collect_folder", "file_sha256", "run_collect_stage"),
    ".worker": ("EvaluationWorker", "WorkerSpec", "choose_device"),
})
