"""Elastic super network (OFA style): elastic layers, the network, extraction, BN recalibration."""
from ems_ray._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".evaluation": ("evaluate", "recalibrate_bn"),
    ".layers": (
        "ClassifierHead", "ConvBNAct", "ElasticBatchNorm2d", "ElasticDepthwiseConv", "ElasticMBBlock",
        "ElasticPointwiseConv", "FirstBlock", "MBBlock",
    ),
    ".network": ("ELASTIC_DIMENSIONS", "ElasticSuperNet", "StaticSubNet", "uses_channels_last"),
})
