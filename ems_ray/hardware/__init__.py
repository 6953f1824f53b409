"""BitFusion hardware model: per-layer cost, the search space's layer LUT, batched sub-net scoring."""
from .bitfusion import BitFusionModel, LayerCost, Tiling
from .config import BitFusionConfig
from .layers import ConvLayer, enumerate_layers, fixed_layers, mobilenet_v2_layers, subnet_layers

__all__ = [
    "BitFusionConfig", "BitFusionModel", "ConvLayer", "LayerCost", "Tiling", "enumerate_layers",
    "fixed_layers", "mobilenet_v2_layers", "subnet_layers",
]
