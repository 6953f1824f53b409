"""The Parquet schema of collected points (one row per measured sub-net); see docs/collection.md."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from ems_ray.errors import InputError

COLLECT_FORMAT = "ems-ray-collect-v1"

COLLECT_SCHEMA = pa.schema([
    pa.field("sample_id", pa.int64(), nullable=False),       # index in the sampling plan (unique per kind)
    pa.field("kind", pa.string(), nullable=False),            # "fp" or "quant"
    pa.field("scheme", pa.int8(), nullable=False),            # 0 FP; 1 random arch+policy; 2 arch × N policies
    pa.field("arch_id", pa.string(), nullable=False),         # architecture hash (bits ignored)
    pa.field("genes", pa.list_(pa.int16()), nullable=False),  # canonical Genome row (choice indices)
    pa.field("encoding_version", pa.string(), nullable=False),
    pa.field("accuracy", pa.float64(), nullable=False),       # validation top-1 in [0, 1] (quantized for quant rows)
    pa.field("fp_accuracy", pa.float64()),                    # quant rows: the float sub-net's; FP rows: null
    pa.field("latency_ms", pa.float64(), nullable=False),     # BitFusion LUT, batch 1
    pa.field("energy_mj", pa.float64(), nullable=False),
    pa.field("bitops", pa.int64(), nullable=False),
    pa.field("macs", pa.int64(), nullable=False),
    pa.field("supernet_sha256", pa.string(), nullable=False),
    pa.field("seed", pa.int64(), nullable=False),             # the point's evaluation seed
    pa.field("wall_seconds", pa.float64(), nullable=False),   # time to measure this point
    pa.field("device", pa.string(), nullable=False),          # "cpu" or "cuda"
    pa.field("node", pa.string(), nullable=False),            # Ray node id (hostname outside Ray)
    pa.field("worker", pa.string(), nullable=False),          # actor id and pid (pid outside Ray)
])


def to_table(columns: dict) -> pa.Table:
    """A table in `COLLECT_SCHEMA` from column arrays (genes as an (n, width) array or list of rows)."""
    missing = [f.name for f in COLLECT_SCHEMA if f.name not in columns]
    if missing:
        raise InputError(f"collected rows lack columns {missing}")
    arrays = []
    for field in COLLECT_SCHEMA:
        value = columns[field.name]
        if field.name == "genes":
            value = [np.asarray(row, dtype=np.int16) for row in value]
        elif isinstance(value, np.ndarray) and value.dtype == object:
            value = value.tolist()
        arrays.append(pa.array(value, type=field.type))
    return pa.Table.from_arrays(arrays, schema=COLLECT_SCHEMA)
