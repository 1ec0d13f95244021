"""Class centres: storage dtypes and a seeded initialisation that does not depend on the world size.

Centres are drawn normal(0, 0.01) (arcface_torch's init) in blocks of INIT_BLOCK classes, each block
from its own seeded generator, so class c gets the same row whether 1 or 64 processes hold it: a
run can be compared or resumed across world sizes, and a test can rebuild the full matrix. The
draws are made on the CPU for any device, so a seed gives the same centres on CPU, CUDA and offload.
"""

from __future__ import annotations

import torch

from facescale.distributed.class_range import ClassRange
from facescale.errors import ConfigError
from facescale.heads.sampling import mixed_seed

DTYPES = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float64": torch.float64,  # for exactness tests
}
INIT_STD = 0.01  # arcface_torch's normal(0, 0.01) initialisation
INIT_BLOCK = 16384  # classes drawn per seeded block, so the init does not depend on the world size


def parse_dtype(value: str | torch.dtype, key: str) -> torch.dtype:
    if isinstance(value, torch.dtype):
        if value in DTYPES.values():
            return value
        raise ConfigError(f"{key}: {value} is not one of {', '.join(DTYPES)}")
    if value not in DTYPES:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(DTYPES)}")
    return DTYPES[value]


def dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, d in DTYPES.items() if d == dtype)


def init_centres(
    classes: ClassRange, dim: int, seed: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """normal(0, 0.01) centres for ``classes`` [n, D]; class c's row is the same for any world size."""
    out = torch.empty((len(classes), dim), dtype=dtype, device=device)
    gen_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    first_block, last_block = classes.start // INIT_BLOCK, (classes.stop - 1) // INIT_BLOCK
    for block in range(first_block, last_block + 1):
        # Drawn on the CPU whatever the device: CPU and CUDA generators give different streams, and
        # the same seed must give the same centres on a CPU, a GPU or an offloaded head.
        generator = torch.Generator().manual_seed(mixed_seed(seed, 1, block))
        values = torch.randn((INIT_BLOCK, dim), generator=generator, dtype=gen_dtype)
        lo = max(classes.start, block * INIT_BLOCK)
        hi = min(classes.stop, (block + 1) * INIT_BLOCK)
        rows = values[lo - block * INIT_BLOCK : hi - block * INIT_BLOCK].mul_(INIT_STD)
        out[lo - classes.start : hi - classes.start] = rows.to(dtype).to(device)
    return out
