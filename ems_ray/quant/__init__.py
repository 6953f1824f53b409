"""Mixed-precision quantization (paper section 4): KL-ranged linear quantizers, fake-quant layers,
policies, calibration, quantization-aware fine-tuning, and ONNX (QDQ) export.

    qnet = apply_policy(subnet, QuantPolicy.from_subnet(cfg, space))   # fake-quant copy
    calibrate(qnet, train_loader, num_batches=8)                       # input ranges (KL)
    quantization_aware_finetune(qnet, train_loader, steps=100, lr=0.005, teacher=subnet)
    acc, loss = evaluate_quantized(qnet, train_loader, val_loader, bn_batches=20)
    export_quantized(qnet, cfg, policy, "runs/x/export", cost=lut)     # model.onnx + model.json
    load_exported("runs/x/export")                                     # ONNX Runtime, same outputs
"""
from ._calibration import calibrate, quantization_disabled
from ._export import (
    EXPORT_FORMAT, ExportedFiles, ExportedModel, ExportError, export_quantized, load_exported, qdq_node_counts,
)
from ._finetune import FinetuneResult, distillation_loss, evaluate_quantized, quantization_aware_finetune
from ._modules import NotCalibratedError, QuantConv2d, QuantLayerMixin, QuantLinear, quant_layers
from ._policy import BlockBits, QuantPolicy, QuantPolicyError, apply_policy
from .recipe import QuantizedResult, QuantRecipe, quantize_subnet
from ._quantizers import (
    MAX_BITS, MIN_BITS, choose_range, fake_quantize, kl_range, magnitude_histogram, max_abs_range, quant_levels,
)

__all__ = [
    "EXPORT_FORMAT", "MAX_BITS", "MIN_BITS", "BlockBits", "ExportError", "ExportedFiles", "ExportedModel",
    "FinetuneResult", "NotCalibratedError", "QuantConv2d", "QuantLayerMixin", "QuantLinear", "QuantPolicy",
    "QuantPolicyError", "apply_policy", "calibrate", "choose_range", "distillation_loss", "evaluate_quantized",
    "export_quantized", "fake_quantize", "kl_range", "load_exported", "magnitude_histogram", "max_abs_range",
    "QuantRecipe", "QuantizedResult", "qdq_node_counts", "quant_layers", "quant_levels", "quantize_subnet", "quantization_aware_finetune", "quantization_disabled",
]
