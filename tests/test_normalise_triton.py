"""The Triton normalise kernel against the CPU reference: on CUDA where there is one, and everywhere
under Triton's interpreter (which runs the kernel's own code with numpy, in a subprocess because
the interpreter must be chosen before triton is imported)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kernels.normalise import model_input, normalise

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parents[1]
MEAN, STD = (0.41, 0.52, 0.6), (0.21, 0.25, 0.3)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Odd sides and a batch whose pixels are not a multiple of the kernel's block; and one of whole blocks.
SHAPES = ((3, 3, 37, 53), (2, 3, 32, 32))


def compare(device: str) -> dict:
    """For each shape and dtype: the largest difference from the reference cast to that dtype, in
    that dtype's steps (units in the last place) at the reference's value, and whether the output
    is channels-last. Also whether bad input is refused."""
    from kernels import normalise_triton

    g = torch.Generator().manual_seed(0)
    out: dict = {"results": []}
    for shape in SHAPES:
        x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
        want32 = normalise(x, MEAN, STD)
        for name, dtype in DTYPES.items():
            got = normalise_triton.normalise(x.to(device), MEAN, STD, dtype).cpu()
            want = want32.to(dtype)
            ulp = torch.finfo(dtype).eps * torch.exp2(torch.frexp(want.float()).exponent.float() - 1)
            steps = float(((got.float() - want.float()).abs() / ulp).max())
            out["results"].append({"shape": list(shape), "dtype": name, "steps": steps, "dtype_ok": got.dtype == dtype,
                                   "channels_last": got.is_contiguous(memory_format=torch.channels_last)})
    try:
        normalise_triton.normalise(torch.zeros((1, 4, 8, 8), dtype=torch.uint8, device=device), MEAN, STD)
        out["refused_bad_input"] = False
    except ValueError:
        out["refused_bad_input"] = True
    return out


def test_kernel_under_the_interpreter_matches_the_reference():
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    code = "import json, tests.test_normalise_triton as t; print(json.dumps(t.compare('cpu')))"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["refused_bad_input"]
    assert len(out["results"]) == len(SHAPES) * len(DTYPES)
    for r in out["results"]:
        assert r["channels_last"] and r["dtype_ok"], r
        # The interpreter casts to bf16 by truncation, not to nearest as a GPU does: one step at most.
        assert r["steps"] <= (1.0 if r["dtype"] == "bfloat16" else 0.0), r


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_kernel_on_cuda_matches_the_reference_exactly():
    out = compare("cuda")
    assert out["refused_bad_input"]
    for r in out["results"]:
        assert r["channels_last"] and r["dtype_ok"] and r["steps"] == 0.0, r


def test_model_input_off_cuda_is_the_reference_channels_last():
    x = torch.randint(0, 256, (2, 3, 20, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    got = model_input(x, MEAN, STD, torch.bfloat16)
    assert got.dtype == torch.bfloat16 and got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(got, normalise(x, MEAN, STD).to(torch.bfloat16))
