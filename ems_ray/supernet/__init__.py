"""Elastic super network (OFA style): elastic layers, the network, extraction, BN recalibration."""
from .evaluation import evaluate, recalibrate_bn
from .layers import (
    ClassifierHead, ConvBNAct, ElasticBatchNorm2d, ElasticDepthwiseConv, ElasticMBBlock, ElasticPointwiseConv,
    FirstBlock, MBBlock,
)
from .network import ELASTIC_DIMENSIONS, ElasticSuperNet, StaticSubNet, uses_channels_last

__all__ = [
    "ELASTIC_DIMENSIONS", "ClassifierHead", "ConvBNAct", "ElasticBatchNorm2d", "ElasticDepthwiseConv",
    "ElasticMBBlock", "ElasticPointwiseConv", "ElasticSuperNet", "FirstBlock", "MBBlock", "StaticSubNet",
    "evaluate", "recalibrate_bn", "uses_channels_last",
]
