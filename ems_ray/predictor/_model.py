"""The predictor network (paper figure 2) and predictor transfer.

    encoding ─┬─ FP part ────► fp_in ──(+)──► act ─► [hidden ─► act] x (layers-1) ─► out ─► accuracy
              └─ quant part ─► quant_in ─┘   (quantization-aware predictor only)

The FP predictor has no `quant_in`. The quantization-aware predictor is the same network plus
`quant_in` (no bias: `fp_in` already has one), so every FP weight has a place to be copied to.
"""
from __future__ import annotations

import torch
from torch import nn

from ems_ray.errors import InputError

ACTIVATION_LAYERS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}
SMALL_HEAD_STD = 0.01


class MLPPredictor(nn.Module):
    """Encoding rows -> accuracy. Trains on standardised targets; `forward` returns accuracy units.

    `target_mean`/`target_std` are buffers, so they travel with the state dict and a transferred
    predictor keeps the scale its copied weights were trained for.
    """

    def __init__(self, fp_dim: int, quant_dim: int = 0, hidden: int = 400, layers: int = 3,
                 activation: str = "relu"):
        super().__init__()
        if activation not in ACTIVATION_LAYERS:
            raise InputError(f"activation: '{activation}' not allowed; allowed values: {sorted(ACTIVATION_LAYERS)}")
        self.fp_dim, self.quant_dim = fp_dim, quant_dim
        self.hidden, self.layers, self.activation = hidden, layers, activation
        act = ACTIVATION_LAYERS[activation]
        self.fp_in = nn.Linear(fp_dim, hidden)
        self.quant_in = nn.Linear(quant_dim, hidden, bias=False) if quant_dim else None
        body: list[nn.Module] = [act()]
        for _ in range(layers - 1):
            body += [nn.Linear(hidden, hidden), act()]
        self.body = nn.Sequential(*body)
        self.out = nn.Linear(hidden, 1)
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))

    @property
    def input_dim(self) -> int:
        return self.fp_dim + self.quant_dim

    def set_target_scale(self, mean: float, std: float) -> None:
        self.target_mean.fill_(float(mean))
        self.target_std.fill_(max(float(std), 1e-6))

    def forward_standardised(self, x: torch.Tensor) -> torch.Tensor:
        """(n, input_dim) -> (n,) prediction in standardised target units."""
        if x.shape[-1] != self.input_dim:
            raise InputError(f"predictor expects {self.input_dim} input features, got {x.shape[-1]}")
        x = x.to(self.fp_in.weight.dtype)
        h = self.fp_in(x[:, : self.fp_dim])
        if self.quant_in is not None:
            h = h + self.quant_in(x[:, self.fp_dim:])
        return self.out(self.body(h)).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # de-standardise in the buffers' float32 even when the layers compute in bfloat16
        return self.forward_standardised(x).to(self.target_std.dtype) * self.target_std + self.target_mean

    def forward_active(self, indices: torch.Tensor) -> torch.Tensor:
        """`forward` of one-hot rows given by the positions of their ones: (n, k) int64, where
        `input_dim` marks no feature (`Encoding.active_indices`); (n,) accuracy, equal to `forward`
        up to float rounding.

        The first layer of a one-hot row is its bias plus the sum of the weight columns its ones
        select, so it is an embedding bag over the transposed weights (k gathered rows instead of a
        product with all `input_dim` features). The transposed table is rebuilt only when a first-
        layer weight has changed since the last call (PyTorch counts in-place updates in `_version`)."""
        h = nn.functional.embedding_bag(indices, self._first_layer_rows(), mode="sum") + self.fp_in.bias
        return self.out(self.body(h)).squeeze(-1).to(self.target_std.dtype) * self.target_std + self.target_mean

    def _first_layer_rows(self) -> torch.Tensor:
        weights = [self.fp_in.weight] + ([self.quant_in.weight] if self.quant_in is not None else [])
        key = tuple((w.data_ptr(), w._version, w.dtype, w.device) for w in weights)
        cached = getattr(self, "_rows_cache", None)
        if cached is None or cached[0] != key:
            with torch.no_grad():
                rows = torch.cat([w.detach().T for w in weights])
                rows = torch.cat([rows, rows.new_zeros(1, self.hidden)])  # index input_dim: no feature
            self._rows_cache = cached = (key, rows)
        return cached[1]

    def set_compute_dtype(self, dtype: torch.dtype) -> None:
        """Cast the layers (not the target scale) to `dtype`, e.g. bfloat16 for fast inference."""
        for module in (self.fp_in, self.quant_in, self.body, self.out):
            if module is not None:
                module.to(dtype)

    def hyper_parameters(self) -> dict:
        return {"fp_dim": self.fp_dim, "quant_dim": self.quant_dim, "hidden": self.hidden,
                "layers": self.layers, "activation": self.activation}


def transfer_to_quant(fp_model: MLPPredictor, quant_dim: int, head_init: str = "zero",
                      generator: torch.Generator | None = None) -> MLPPredictor:
    """A quantization-aware predictor initialised from a trained FP predictor (predictor transfer).

    Every FP parameter and buffer is copied exactly. The new quant head starts at zero by
    default: the new predictor then computes exactly the FP predictor's function (the paper's
    premise: accuracy order is mostly preserved by quantization), and fine-tuning starts from the
    FP predictor's quality instead of from noise. The head still learns — the gradient of a
    first-layer weight is the input times the back-propagated error, not zero — and nothing
    upstream of it needs its value. `small` (N(0, 0.01)) is offered for comparison.
    """
    if fp_model.quant_in is not None:
        raise InputError("transfer_to_quant expects an FP predictor (one without a quant head)")
    if head_init not in ("zero", "small"):
        raise InputError(f"head_init: '{head_init}' not allowed; allowed values: ['small', 'zero']")
    q = MLPPredictor(fp_model.fp_dim, quant_dim, fp_model.hidden, fp_model.layers, fp_model.activation)
    q.to(next(fp_model.parameters()).device)
    missing, unexpected = q.load_state_dict(fp_model.state_dict(), strict=False)
    if missing != ["quant_in.weight"] or unexpected:  # the two layouts must differ by the head only
        raise RuntimeError(f"transfer mismatch: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        if head_init == "zero":
            q.quant_in.weight.zero_()
        else:
            q.quant_in.weight.normal_(0.0, SMALL_HEAD_STD, generator=generator)
    return q
