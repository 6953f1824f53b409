"""Mixed-precision quantization (paper section 4): KL-ranged linear quantizers, fake-quant layers,
policies, calibration, quantization-aware fine-tuning, and an ONNX export that ONNX Runtime runs
with integer kernels.

    qnet = apply_policy(subnet, QuantPolicy.from_subnet(cfg, space))   # fake-quant copy
    calibrate(qnet, train_loader, num_batches=8)                       # input ranges (KL)
    quantization_aware_finetune(qnet, train_loader, steps=100, lr=0.005, teacher=subnet)
    acc, loss = evaluate_quantized(qnet, train_loader, val_loader, bn_batches=20)
    export_quantized(qnet, cfg, policy, "runs/x/export", cost=lut,     # model.onnx (QLinearConv) + model.json
                     calibration=train_loader)
    load_exported("runs/x/export")                                     # ONNX Runtime, same predictions
"""
from ems_ray._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "._calibration": ("calibrate", "quantization_disabled"),
    "._export": (
        "EXPORT_FORMAT", "ExportedFiles", "ExportedModel", "ExportError", "export_float_onnx", "export_quantized",
        "int8_onnx_bytes", "load_exported", "onnx_op_counts",
    ),
    "._deploy": ("IntegerGrid", "deploy_graph", "input_grid"),
    "._runtime": ("ExecutedOps", "Latency", "cpu_name", "executed_ops", "measure_latency", "ort_session"),
    "._finetune": ("FinetuneResult", "distillation_loss", "evaluate_quantized", "quantization_aware_finetune"),
    "._modules": ("NotCalibratedError", "QuantConv2d", "QuantLayerMixin", "QuantLinear", "quant_layers"),
    "._policy": ("BlockBits", "QuantPolicy", "QuantPolicyError", "apply_policy"),
    ".config": ("QuantRecipe",),
    ".recipe": ("QuantizedResult", "quantize_subnet"),
    "ems_ray.quantizers": (
        "MAX_BITS", "MIN_BITS", "choose_range", "fake_quantize", "kl_range", "magnitude_histogram", "max_abs_range",
        "quant_levels",
    ),
})
