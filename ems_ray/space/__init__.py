"""Search space: presets, sub-net configs, gene arrays for evolution, and the one-hot encoding."""
from .encoding import ENCODING_VERSION, Encoding
from .fingerprint import space_fingerprint
from .genome import Genome
from .presets import load_preset, preset_names, resolve_space
from .search_space import BitChoices, BlockSlot, FixedBlockSpec, SearchSpace, StageSpec, StemSpec
from .subnet import BlockConfig, InvalidSubnetError, SubnetConfig, validate_subnet

__all__ = [
    "space_fingerprint",
    "BitChoices", "BlockConfig", "BlockSlot", "ENCODING_VERSION", "Encoding",
    "FixedBlockSpec", "Genome", "InvalidSubnetError", "SearchSpace", "StageSpec", "StemSpec",
    "SubnetConfig", "load_preset", "preset_names", "resolve_space", "validate_subnet",
]
