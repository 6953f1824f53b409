"""The layer LUT: the BitFusion model evaluated once per (layer, wbits, abits) a space can produce,
stored as Parquet, and a vectorised scorer that prices whole batches of sub-nets from it.

Search reads this table, never the model: a sub-net's latency/energy is the sum of its layers'
entries (paper section 3.4). Scoring gathers from dense per-slot arrays, so 100k sub-nets cost a
few numpy gathers rather than 100k Python walks.
"""
from __future__ import annotations

import json
import logging
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ems_ray.artifacts import read_verified, write_artifact
from ems_ray.errors import InputError
from ems_ray.space import Genome, SearchSpace, resolve_space, space_fingerprint
from ems_ray.space.genome import DW_A, DW_W, GENES_PER_SLOT, KERNEL, MID, PW_A, PW_W

from .bitfusion import BitFusionModel, LayerCost
from .config import BitFusionConfig
from .layers import ConvLayer, block_layers, enumerate_layers, fixed_layers
from .targets import BitFusionTarget, OnnxRuntimeTarget, parse_target

if TYPE_CHECKING:
    from ems_ray.run_context import RunContext
    from ems_ray.space import SubnetConfig

    from .measured import NetworkFit

# v2: priced with partial-sum loads and the simulator-faithful depthwise mapping (BitFusionConfig's
# load_partial_sums / depthwise_* fields); v1 tables hold the previous model's numbers.
LUT_FORMAT_VERSION = 3  # 3: the space hash is `space_fingerprint`
METADATA_KEY = b"ems_ray.cost_table"
SHAPE_COLUMNS = ("kind", "in_channels", "out_channels", "kernel", "stride", "in_h", "in_w")
COST_COLUMNS = ("latency_ms", "energy_mj", "macs", "cycles", "compute_cycles", "dram_bits")
SCHEMA = pa.schema(
    [("kind", pa.string())]
    + [(c, pa.int32()) for c in SHAPE_COLUMNS[1:]]
    + [("wbits", pa.int8()), ("abits", pa.int8()), ("latency_ms", pa.float64()), ("energy_mj", pa.float64())]
    + [(c, pa.int64()) for c in COST_COLUMNS[2:]]
)
SPREAD_COLUMNS = ("latency_p10_ms", "latency_p90_ms")  # measured tables only
SCORE_KEYS = ("latency_ms", "energy_mj", "macs", "bitops")


class CostTableError(InputError):
    """A cost table that cannot be used: damaged, unreadable, built for another space/hardware, or incomplete."""


class HostMismatchError(CostTableError):
    """A measured table read on a host (CPU model or onnxruntime version) other than the one that measured it."""


logger = logging.getLogger(__name__)

RECOVER = ("move it aside and re-run to rebuild it (`ems-ray lut build`; a run rebuilds its "
           "`<run_dir>/lut.parquet` on first use)")


def space_hash(space: SearchSpace) -> str:
    """The space's fingerprint; a LUT is valid only for the space it was built for."""
    return space_fingerprint(space)


class CostTable:
    """Latency/energy of every (layer, wbits, abits) of one search space on one hardware target.

    A BitFusion table holds the model's numbers. A measured table (`OnnxRuntimeTarget`) holds layer
    medians (energy NaN: not measured), their spread, the measuring host, and the `NetworkFit` that
    turns a sum of layers into a whole network's latency; entries at precisions the target does
    not execute are +inf, so such a sub-net fits no budget.
    """

    def __init__(self, space: SearchSpace, config: BitFusionConfig | None, columns: dict[str, np.ndarray],
                 target: BitFusionTarget | OnnxRuntimeTarget | None = None, fit: NetworkFit | None = None,
                 host: dict | None = None, calibration: dict | None = None):
        self.space = space
        self.target = target or BitFusionTarget(config=config or BitFusionConfig())
        self.config = self.target.config if isinstance(self.target, BitFusionTarget) else None
        self.fit, self.host, self.calibration = fit, host, calibration
        self.columns = {name: np.asarray(columns[name]) for name in SCHEMA.names}
        self.spread = {name: np.asarray(columns[name]) for name in SPREAD_COLUMNS if name in columns}
        self.genome = Genome(space)
        self._index = {
            (ConvLayer(*(_py(self.columns[c][i]) for c in SHAPE_COLUMNS)),
             int(self.columns["wbits"][i]), int(self.columns["abits"][i])): i
            for i in range(len(self))
        }
        self._build_dense()

    # ----- construction -------------------------------------------------------------------
    @classmethod
    def from_costs(cls, space: SearchSpace, config: BitFusionConfig, costs: Iterable[LayerCost]) -> CostTable:
        rows = [
            (c.layer.kind, c.layer.in_channels, c.layer.out_channels, c.layer.kernel, c.layer.stride,
             c.layer.in_h, c.layer.in_w, c.wbits, c.abits, c.latency_ms, c.energy_mj, c.macs, c.cycles,
             c.compute_cycles, c.dram_bits)
            for c in costs
        ]
        columns = {name: np.asarray([r[i] for r in rows]) for i, name in enumerate(SCHEMA.names)}
        return cls(space, config, columns)

    @classmethod
    def from_measurements(cls, space: SearchSpace, target: OnnxRuntimeTarget, timings: dict[str, dict],
                          host: dict) -> CostTable:
        """A measured table from `measured.layer_key` -> {median_ms, p10_ms, p90_ms} (no fit yet)."""
        from .measured import layer_from_key

        rows = []
        for key, t in timings.items():
            layer, w, a = layer_from_key(key)
            rows.append((layer.kind, layer.in_channels, layer.out_channels, layer.kernel, layer.stride, layer.in_h,
                         layer.in_w, w, a, t["median_ms"], np.nan, layer.macs, 0, 0, 0, t["p10_ms"], t["p90_ms"]))
        names = SCHEMA.names + list(SPREAD_COLUMNS)
        columns = {name: np.asarray([r[i] for r in rows]) for i, name in enumerate(names)}
        return cls(space, None, columns, target=target, host=host)

    def with_fit(self, fit: NetworkFit, calibration: dict | None = None) -> CostTable:
        """This table with whole-network latency = `fit` applied to its layer sums."""
        return CostTable(self.space, self.config, {**self.columns, **self.spread}, self.target, fit, self.host,
                         calibration)

    @property
    def measured(self) -> bool:
        return self.target.measured

    def __len__(self) -> int:
        return len(self.columns["kind"])

    @property
    def space_hash(self) -> str:
        return space_hash(self.space)

    def lookup(self, layer: ConvLayer, wbits: int, abits: int) -> dict[str, float]:
        """The stored costs of one entry; CostTableError if the table lacks it."""
        i = self._index.get((layer, int(wbits), int(abits)))
        if i is None:
            raise CostTableError(
                f"no entry for {layer.describe()} at W{wbits}A{abits} in the '{self.space.name}' table"
            )
        return {name: _py(self.columns[name][i]) for name in COST_COLUMNS}

    def _build_dense(self) -> None:
        """Dense arrays indexed by gene values: block_pw[slot, mid, w, a] (expand + project, which share
        the pw bits), block_dw[slot, mid, kernel, w, a], and the fixed layers' constant. The last
        axis holds (latency_ms, energy_mj) as float and (macs, bitops) as int."""
        sp = self.space
        pw_w, pw_a, dw_w, dw_a = sp.bits.as_tuple()
        n_slots, n_mid = len(sp.slots), max(len(s.mid_choices) for s in sp.slots)
        n_k = len(sp.kernel_choices)
        self._pw_f = np.full((n_slots, n_mid, len(pw_w), len(pw_a), 2), np.nan)
        self._pw_i = np.zeros((n_slots, n_mid, len(pw_w), len(pw_a), 2), dtype=np.int64)
        self._dw_f = np.full((n_slots, n_mid, n_k, len(dw_w), len(dw_a), 2), np.nan)
        self._dw_i = np.zeros((n_slots, n_mid, n_k, len(dw_w), len(dw_a), 2), dtype=np.int64)
        missing: list[str] = []
        supported = set(self.target.precisions())

        def entry(layer: ConvLayer, w: int, a: int) -> tuple[np.ndarray, np.ndarray]:
            i = self._index.get((layer, w, a))
            if i is None and (w, a) not in supported:  # the target cannot run it: no budget admits it
                return np.full(2, np.inf), np.array([layer.macs, layer.macs * w * a], dtype=np.int64)
            if i is None:
                missing.append(f"{layer.describe()} W{w}A{a}")
                return np.zeros(2), np.zeros(2, dtype=np.int64)
            macs = int(self.columns["macs"][i])
            return (np.array([self.columns["latency_ms"][i], self.columns["energy_mj"][i]]),
                    np.array([macs, macs * w * a], dtype=np.int64))

        fb = sp.fixed_bits
        self._fixed_f, self._fixed_i = np.zeros(2), np.zeros(2, dtype=np.int64)
        for layer in fixed_layers(sp):
            f, n = entry(layer, fb, fb)
            self._fixed_f += f
            self._fixed_i += n
        for slot in sp.slots:
            for m, mid in enumerate(slot.mid_choices):
                for k, kernel in enumerate(sp.kernel_choices):
                    expand, depthwise, project = block_layers(slot, mid, kernel)
                    for (wi, w), (ai, a) in _pairs(dw_w, dw_a):
                        at = (slot.index, m, k, wi, ai)
                        self._dw_f[at], self._dw_i[at] = entry(depthwise, w, a)
                for (wi, w), (ai, a) in _pairs(pw_w, pw_a):
                    (fe, ne), (fp, np_) = entry(expand, w, a), entry(project, w, a)
                    self._pw_f[slot.index, m, wi, ai] = fe + fp
                    self._pw_i[slot.index, m, wi, ai] = ne + np_
        if missing:
            raise CostTableError(
                f"cost table for '{sp.name}' lacks {len(missing)} entries the space needs, e.g. "
                f"{', '.join(missing[:3])}; rebuild it with build_lut"
            )
        if self.fit is not None:  # a block's three layers carry their share of the network fit
            f = self.fit
            self._fixed_f[0] = f.constant_ms + f.scale * self._fixed_f[0] + f.per_layer_ms * len(fixed_layers(sp))
            self._pw_f[..., 0] = f.scale * self._pw_f[..., 0] + 2 * f.per_layer_ms  # expand + project
            self._dw_f[..., 0] = f.scale * self._dw_f[..., 0] + f.per_layer_ms

    # ----- scoring --------------------------------------------------------------------------
    def score(self, genes: np.ndarray, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """latency_ms, energy_mj (float64) and macs, bitops (int64) of each gene row (see `Genome`);
        only `keys` of them when given (a budget test needs one or two: fewer rows gathered)."""
        g = self.genome
        genes = np.atleast_2d(np.asarray(genes))
        if genes.ndim != 2 or genes.shape[1] != g.width:
            raise InputError(f"genes: expected shape (n, {g.width}) for '{self.space.name}', got {genes.shape}")
        if np.any(genes < 0) or np.any(genes >= g.choice_counts):
            bad = np.argwhere((genes < 0) | (genes >= g.choice_counts))[0]
            raise InputError(f"genes: row {bad[0]} column {bad[1]} is {genes[tuple(bad)]}, outside its "
                             f"{g.choice_counts[bad[1]]} choices")
        keys = SCORE_KEYS if keys is None else tuple(keys)
        unknown = [k for k in keys if k not in SCORE_KEYS]
        if unknown:
            raise InputError(f"score keys: {unknown} not allowed; allowed values: {list(SCORE_KEYS)}")
        rows = [SCORE_KEYS.index(k) for k in keys]
        # one gather from the flattened per-block tables: each active slot picks its pw and its dw
        # entry, a skipped slot the zero column at the end
        flat, strides, base = self._flat_tables
        pad = flat.shape[1] - 1
        slot_genes = genes[:, g.n_stages:].reshape(len(genes), g.n_slots, GENES_PER_SLOT).astype(np.intp)
        index = slot_genes @ strides + (base - pad)  # (n, slots, 2): pw entry, dw entry, less the pad
        index = (index * g.active(genes)[..., None] + pad).reshape(len(genes), 2 * g.n_slots)
        totals = (np.take(flat, index, axis=1)[rows] if len(rows) == len(SCORE_KEYS) else
                  np.stack([np.take(flat[row], index) for row in rows])).sum(axis=2)
        out = {}
        for key, total, row in zip(keys, totals, rows):
            out[key] = total + self._fixed_f[row] if row < 2 else np.rint(total).astype(np.int64) + self._fixed_i[row - 2]
        return out

    @cached_property
    def _flat_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The dense tables as one (4, entries) float64 array, columns [pw entries..., dw entries...,
        zeros] and rows latency, energy, MACs, BitOps (integers, exact in float64 below 2**53: the
        sum of all entries bounds any sub-net's), the (6, 2) strides from a slot's genes to its pw
        and dw column, and the (slots, 2) offset of each slot's."""
        pw, dw = self._pw_f.shape[:4], self._dw_f.shape[:5]
        rows = [np.concatenate([a.reshape(-1, 2), b.reshape(-1, 2), np.zeros((1, 2))])
                for a, b in ((self._pw_f, self._dw_f), (self._pw_i, self._dw_i))]
        if max(int(self._pw_i.sum()), int(self._dw_i.sum())) >= 2**52:
            raise CostTableError("cost table: MACs or BitOps too large to sum exactly in float64")
        flat = np.ascontiguousarray(np.concatenate(rows, axis=1).T)
        pw_strides, dw_strides = (np.cumprod((shape + (1,))[:0:-1])[::-1] for shape in (pw, dw))
        strides = np.zeros((GENES_PER_SLOT, 2), dtype=np.intp)
        strides[[MID, PW_W, PW_A], 0] = pw_strides[1:]  # pw[slot, mid, w, a]
        strides[[MID, KERNEL, DW_W, DW_A], 1] = dw_strides[1:]  # dw[slot, mid, kernel, w, a]
        slots = np.arange(pw[0])
        base = np.stack([slots * pw_strides[0], int(np.prod(pw)) + slots * dw_strides[0]], axis=1)
        return flat, strides, base

    def score_config(self, config: SubnetConfig) -> dict[str, float]:
        """Scores of one sub-net config (validated against the space first)."""
        scores = self.score(self.genome.from_config(config)[None, :])
        return {k: _py(v[0]) for k, v in scores.items()}

    def describe_hardware(self) -> str:
        if self.config is not None:
            return self.config.describe()
        h, f = self.host or {}, self.fit
        fit = (f"; network = {f.constant_ms:.4f} ms + {f.scale:.3f} x layers + {f.per_layer_ms:.4f} ms/layer "
               f"(fit on {f.points} sub-nets, rms error {100 * f.rms_rel_error:.1f}%)" if f else "")
        return (f"measured: onnxruntime {h.get('onnxruntime')} {h.get('provider')}, {h.get('threads')} thread(s), "
                f"batch {h.get('batch')}, on '{h.get('cpu')}'{fit}")

    def summary(self) -> str:
        sp = self.space
        supported = set(self.target.supported_bits)
        common = sorted(set.intersection(supported, *(set(b) for b in sp.bits.as_tuple())))
        hw = self.config.config_hash() if self.config is not None else self.target.kind
        lines = [
            f"cost table '{sp.name}': {len(self)} entries, {len(self._distinct_layers())} layers "
            f"(format v{LUT_FORMAT_VERSION}, space {self.space_hash}, hardware {hw})",
            f"  {self.describe_hardware()}",
            f"  entry latency {self.columns['latency_ms'].min():.4f}..{self.columns['latency_ms'].max():.4f} ms"
            + ("" if self.measured else
               f", energy {self.columns['energy_mj'].min():.4f}..{self.columns['energy_mj'].max():.4f} mJ"),
        ]
        for bits in sorted({common[-1], common[0]}, reverse=True) if common else []:
            for name, genes in (("largest", self.genome.largest(bits)), ("smallest", self.genome.smallest(bits))):
                s = {k: v[0] for k, v in self.score(genes).items()}
                lines.append(
                    f"  {name:8s} sub-net, {bits}-bit: {s['latency_ms']:8.3f} ms {s['energy_mj']:8.3f} mJ "
                    f"{s['macs'] / 1e6:8.1f} MMACs {s['bitops'] / 1e9:7.2f} GBitOps"
                )
        return "\n".join(lines)

    def _distinct_layers(self) -> set[ConvLayer]:
        return {key[0] for key in self._index}

    # ----- files -----------------------------------------------------------------------------
    def metadata(self) -> dict[str, object]:
        meta = {"format_version": LUT_FORMAT_VERSION, "space_name": self.space.name, "space_hash": self.space_hash}
        if self.config is not None:
            return {**meta, "hardware_hash": self.config.config_hash(),
                    "hardware_config": self.config.model_dump(mode="json"), "model": "ems_ray.hardware.BitFusionModel"}
        return {**meta, "target": self.target.model_dump(mode="json"), "host": self.host,
                "network_fit": self.fit.as_dict() if self.fit else None, "calibration": self.calibration,
                "model": "ems_ray.hardware.measured"}

    def to_arrow(self) -> pa.Table:
        data = {name: self.columns[name] for name in SCHEMA.names}
        schema = SCHEMA
        for name, values in self.spread.items():
            data[name] = values
            schema = schema.append(pa.field(name, pa.float64()))
        table = pa.Table.from_pydict(data, schema=schema)
        return table.replace_schema_metadata({METADATA_KEY: json.dumps(self.metadata()).encode()})

    def save(self, path: str | Path) -> Path:
        """Write the Parquet table and its digest (`<path>.sha256`) atomically."""
        sink = pa.BufferOutputStream()
        pq.write_table(self.to_arrow(), sink)
        return write_artifact(path, sink.getvalue().to_pybytes())

    @classmethod
    def load(cls, path: str | Path, space: SearchSpace | str, config: BitFusionConfig | None = None,
             target: BitFusionTarget | OnnxRuntimeTarget | None = None, force: bool = False) -> CostTable:
        """Read a table saved by `save`, checking that it belongs to `space` (and to `config` or
        `target`, when given), holds every entry the space needs and matches its digest;
        CostTableError says what is wrong. A measured table read on another host or onnxruntime
        version raises `HostMismatchError` unless `force`."""
        space = resolve_space(space)
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"cost table not found: {path}")
        data = read_verified(path, "cost table", CostTableError, RECOVER)
        try:
            table = pq.read_table(pa.BufferReader(data))
        except (pa.ArrowException, OSError, ValueError) as e:
            raise CostTableError(f"{path}: not a readable Parquet cost table ({e})") from e
        raw = (table.schema.metadata or {}).get(METADATA_KEY)
        if raw is None:
            raise CostTableError(f"{path}: no ems-ray cost-table metadata; write tables with CostTable.save")
        try:
            meta = json.loads(raw)
            version, name = meta["format_version"], meta["space_name"]
            stored_space_hash = meta["space_hash"]
            stored_hw = meta["hardware_config"] if "target" not in meta else None
        except (ValueError, KeyError, TypeError) as e:
            raise CostTableError(f"{path}: cost-table metadata is corrupt ({e!r})") from e
        if version != LUT_FORMAT_VERSION:
            raise CostTableError(
                f"{path}: table format v{version}, this ems-ray reads v{LUT_FORMAT_VERSION}; rebuild it"
            )
        if name != space.name:
            raise CostTableError(f"{path}: built for search space '{name}', not '{space.name}'")
        if stored_space_hash != space_hash(space):
            raise CostTableError(
                f"{path}: built for a different definition of space '{name}' "
                f"(hash {stored_space_hash}, current {space_hash(space)}); rebuild it"
            )
        if stored_hw is None:
            stored_config, extra = None, _measured_parts(path, meta, target, force)
            if target is not None and target.kind == "bitfusion":
                raise CostTableError(f"{path}: a table measured on '{extra['target'].kind}', the run's "
                                     f"hardware is 'bitfusion'")
        else:
            extra = {}
            try:
                stored_config = BitFusionConfig.model_validate(stored_hw)
            except ValueError as e:
                raise CostTableError(f"{path}: stored hardware config is invalid ({e})") from e
            if meta.get("hardware_hash", stored_config.config_hash()) != stored_config.config_hash():
                raise CostTableError(
                    f"{path}: stored hardware config hashes to {stored_config.config_hash()}, not the recorded "
                    f"{meta['hardware_hash']}: it was written by another model version; rebuild it"
                )
            if target is not None and target.kind != "bitfusion":
                raise CostTableError(f"{path}: a BitFusion table, the run's hardware is '{target.kind}'")
            config = config or (target.config if target is not None else None)
            if config is not None and config.config_hash() != stored_config.config_hash():
                raise CostTableError(f"{path}: built for another BitFusion config (hash "
                                     f"{stored_config.config_hash()}, expected {config.config_hash()})")
        absent = [c for c in SCHEMA.names if c not in table.column_names]
        if absent:
            raise CostTableError(f"{path}: columns missing: {absent}")
        names = SCHEMA.names + [c for c in SPREAD_COLUMNS if c in table.column_names]
        try:
            columns = {c: table.column(c).cast(SCHEMA.field(c).type if c in SCHEMA.names else pa.float64())
                       .to_numpy(zero_copy_only=False) for c in names}
        except (pa.ArrowException, ValueError) as e:
            raise CostTableError(f"{path}: a column has the wrong type ({e})") from e
        for c in ("latency_ms",) if stored_hw is None else ("latency_ms", "energy_mj"):
            values = columns[c]
            if not np.all(np.isfinite(values)) or np.any(values < 0):
                raise CostTableError(f"{path}: column {c} holds non-finite or negative values")
        try:
            return cls(space, stored_config, columns, **extra)
        except CostTableError as e:
            raise CostTableError(f"{path}: {e}") from e
        except (ValueError, TypeError) as e:
            raise CostTableError(f"{path}: a row does not describe a valid layer ({e})") from e


def _measured_parts(path: Path, meta: dict, target: OnnxRuntimeTarget | None, force: bool) -> dict:
    """Target, host and fit of a measured table's metadata, checked against `target` and this host."""
    from .measured import NetworkFit, host_info, host_mismatch

    try:
        stored = parse_target(meta["target"])
        host, fit = dict(meta["host"]), meta["network_fit"]
        fit = NetworkFit(**fit) if fit is not None else None
    except (KeyError, TypeError, ValueError, InputError) as e:
        raise CostTableError(f"{path}: measured-table metadata is corrupt ({e!r})") from e
    if fit is None:
        raise CostTableError(f"{path}: a measured table without its network fit (an unfinished build); "
                             f"finish it with `ems-ray lut build`")
    if target is not None and target.kind == stored.kind:
        differs = [f"{k} {getattr(stored, k)} (config: {getattr(target, k)})" for k in ("provider", "threads", "batch")
                   if getattr(stored, k) != getattr(target, k)]
        if differs:
            raise CostTableError(f"{path}: measured with {', '.join(differs)}; rebuild it for the config's target")
    mismatch = host_mismatch(host, host_info(stored))
    if mismatch and not (force or (target is not None and getattr(target, "accept_other_host", False))):
        raise HostMismatchError(
            f"{path}: measured with {', '.join(mismatch)}: its latencies do not hold here. Build a table on "
            f"this host (`ems-ray lut build --target {stored.kind}`), or load it anyway with force=True / "
            f"--force (hardware.accept_other_host: true in a run config)")
    if mismatch:
        logger.warning("%s: measured with %s; loaded anyway (forced)", path, ", ".join(mismatch))
    return {"target": stored, "fit": fit, "host": host, "calibration": meta.get("calibration")}


def build_lut(space: SearchSpace | str, config: BitFusionConfig | None = None, progress: bool = False) -> CostTable:
    """Evaluate the BitFusion model once for every (layer, wbits, abits) `space` can produce."""
    space = resolve_space(space)
    model = BitFusionModel(config)
    layers = enumerate_layers(space)
    items = layers.items()
    if progress:
        from tqdm import tqdm

        items = tqdm(items, total=len(layers), desc=f"LUT {space.name}", unit="layer")
    costs: list[LayerCost] = []
    for layer, pairs in items:
        costs.extend(model.layer_costs(layer, pairs))
    return CostTable.from_costs(space, model.config, costs)


def _pairs(w_choices: list[int], a_choices: list[int]):
    return ((wi_w, ai_a) for wi_w in enumerate(w_choices) for ai_a in enumerate(a_choices))


def _py(value):
    """numpy scalar -> Python scalar (ConvLayer validation wants real ints)."""
    return value.item() if isinstance(value, np.generic) else value


def run_cost_table(run: RunContext, save: bool = True) -> CostTable:
    """The cost table a run prices every sub-net with, obtained this one way by every stage (search,
    collection, export, final, the pipeline's preflight): `search.lut` (`run.lut`) when given (it
    must exist), else `<run_dir>/lut.parquet`, built and saved there on first use so that later
    stages read the same table (`save=False`: checks that must write nothing). Priced or measured
    for the run's hardware target (`run.hardware`)."""
    space, target = run.search_space(), run.hardware
    if run.lut:
        path = Path(run.lut)
        if not path.is_file():
            raise FileNotFoundError(f"search.lut: cost table not found: {path}")
        return CostTable.load(path, space, target=target)
    path = run.layout.lut
    if path.is_file():
        return CostTable.load(path, space, target=target)
    if target.measured:
        raise CostTableError(f"no measured latency table at {path}: build it with `ems-ray lut build --config "
                             f"<this config>` (or the pipeline's lut stage), or name one in search.lut")
    table = build_lut(space, target.config)
    if save:
        table.save(path)
    return table


def build_run_table(run: RunContext, use_ray: bool = False) -> CostTable:
    """Build the run's table at `<run_dir>/lut.parquet` for `run.hardware` (the pipeline's lut stage).

    A measured target is timed where its `resources` say when Ray is used (and resources are
    given), else in this process; a rerun after an interruption measures only what is missing."""
    space, target, path = run.search_space(), run.hardware, run.layout.lut
    if not target.measured:
        table = build_lut(space, target.config)
        table.save(path)
        return table
    from .measured import build_measured_lut

    runner = None
    if use_ray and target.resources:
        from ._ray_build import ray_runner

        runner = ray_runner(run, target)
    return build_measured_lut(space, target, path, runner=runner)
