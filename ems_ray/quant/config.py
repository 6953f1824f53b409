"""Configuration of how a quantization policy is measured (the run config's `quant:` section, and
`collect.quant_recipe` / `final.recipe`). Plain pydantic: the run config loads without torch."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt


class QuantRecipe(BaseModel):
    """How a policy is measured: calibration, a short distilled fine-tune, BN-aware evaluation."""

    model_config = ConfigDict(extra="forbid")

    calib_batches: PositiveInt = 8
    calibration: Literal["kl", "max"] = Field(
        "kl", description="range choice: KL divergence, or the max magnitude (what the quantization-aware "
                          "super network trained with)")
    finetune_steps: int = Field(100, ge=0)
    finetune_lr: float = Field(0.005, gt=0)
    distill: bool = Field(True, description="distil from the float sub-net while fine-tuning")
    bn_batches: PositiveInt = 8
    val_batches: int | None = Field(None, ge=1, description="limit evaluation batches (None: all)")
