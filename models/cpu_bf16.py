"""Whether this CPU multiplies bf16 natively, read without torch (the pipeline's client, which sizes
model calls by it, never loads torch)."""

from __future__ import annotations

import functools


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True where the CPU multiplies bf16 natively (AMX or AVX512-BF16). Elsewhere bf16 autocast on
    the CPU is emulated and slower than fp32, so it is only used where this says so."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False
