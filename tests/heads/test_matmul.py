"""head.matmul_dtype: the cosine error of each GEMM dtype against float64, and what ``auto`` picks."""

import pytest
import torch
import torch.nn.functional as F

from facescale.config import OptimConfig
from facescale.distributed.context import DistContext
from facescale.errors import ConfigError
from facescale.heads.fused_rows import CosineGrad, SampledRows, sampled_cosine
from facescale.heads.margins import arcface
from facescale.heads.matmul import Matmul, resolve_matmul_dtype
from facescale.heads.partial_fc import PartialFC

# Bounds on |cos - cos_float64| over 64 x 3000 pairs of random 512-d unit vectors (measured maxima
# are about 5x smaller). CPU 16-bit GEMMs return 16-bit products, so their bound includes the
# rounding of the result (|cos| <= ~0.25 here, bf16 spacing 2**-9 there).
CPU = DistContext.single("cpu")
BOUNDS = {"float32": 1e-6, "tf32": 1e-6, "bfloat16": 4e-3, "float16": 5e-4}


def _cosines(name: str, weight_dtype: torch.dtype, device: torch.device):
    gen = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(64, 512, generator=gen, dtype=torch.float64), dim=1)
    w = torch.randn(3000, 512, generator=gen, dtype=torch.float64) * 0.01
    exact = x @ F.normalize(w, dim=1).T
    rows = SampledRows.gather({"weight": w.to(weight_dtype).to(device)}, None)
    matmul = Matmul(name, torch.float32, device)
    got = sampled_cosine(x.float().to(device), rows, matmul, CosineGrad())
    return (got.double().cpu() - exact).abs().max().item()


@pytest.mark.parametrize("name", list(BOUNDS))
def test_cosine_error_against_float64_is_bounded(name):
    assert _cosines(name, torch.float32, torch.device("cpu")) < BOUNDS[name]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", list(BOUNDS))
def test_cosine_error_on_cuda_is_bounded(name):
    # CUDA writes 16-bit GEMM results in fp32: only the inputs' rounding is left
    bound = {"float32": 1e-6, "tf32": 2e-3, "bfloat16": 2e-3, "float16": 3e-4}[name]
    assert _cosines(name, torch.float32, torch.device("cuda")) < bound


def test_auto_picks_a_bounded_dtype_and_float64_heads_stay_exact():
    assert resolve_matmul_dtype("auto", torch.device("cpu")) in ("bfloat16", "float32")
    assert resolve_matmul_dtype("float16", torch.device("cpu")) == "float16"
    with pytest.raises(ConfigError, match="is not one of auto, float32, tf32, bfloat16, float16"):
        resolve_matmul_dtype("fp8", torch.device("cpu"))
    head = PartialFC(10, 8, arcface(), DistContext.single("cpu"), weight_dtype="float64",
                     momentum_dtype="float64", optim=OptimConfig(), matmul_dtype="bfloat16")  # fmt: skip
    assert head.matmul.input_dtype == torch.float64


def test_lean_rows_train_with_every_matmul_dtype():
    for name in BOUNDS:
        lean = {"weight_dtype": "bfloat16", "momentum_dtype": "bfloat16"}
        head = PartialFC(
            50, 16, arcface(), CPU, sample_rate=0.5, optim=OptimConfig(), matmul_dtype=name, **lean
        )
        gen = torch.Generator().manual_seed(1)
        embeddings, labels = torch.randn(16, 16, generator=gen), torch.arange(16)
        first = None
        for _ in range(12):
            loss = head(embeddings, labels)
            loss.backward()
            head.step(1.0)
            first = first if first is not None else loss.item()
        assert loss.item() < 0.7 * first, name
