"""Search space: presets, sub-net configs, gene arrays for evolution, and the one-hot encoding."""
from ems_ray._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".encoding": ("ENCODING_VERSION", "Encoding"),
    ".fingerprint": ("space_fingerprint",),
    ".genome": ("Genome",),
    ".presets": ("load_preset", "preset_names", "resolve_space"),
    ".search_space": ("BitChoices", "BlockSlot", "FixedBlockSpec", "SearchSpace", "StageSpec", "StemSpec"),
    ".subnet": ("BlockConfig", "InvalidSubnetError", "SubnetConfig", "validate_subnet"),
})
