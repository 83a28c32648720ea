"""What this machine trains on: whether a GPU is present, and whether its CPU computes bfloat16 natively.

Both answers come from the operating system, not from TensorFlow, so that flags parse before it loads.
"""

import functools
import shutil
from pathlib import Path

from src import paths

# CPU flags of native bfloat16 arithmetic (Intel AMX, AVX-512 BF16), which oneDNN runs convolutions with.
BFLOAT16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def gpu_present() -> bool:
    """Returns whether an NVIDIA GPU is present, without importing TensorFlow."""
    return Path("/proc/driver/nvidia/gpus").is_dir() or shutil.which("nvidia-smi") is not None


@functools.cache
def cpu_computes_bfloat16(cpuinfo: Path = paths.CPUINFO) -> bool:
    """Returns whether the CPU has native bfloat16 arithmetic (one of `BFLOAT16_CPU_FLAGS`).

    Elsewhere bfloat16 is emulated and slower than float32; so is it where the file cannot be read.

    Args:
        cpuinfo: the file listing the CPU's flags (`/proc/cpuinfo` on Linux).
    """
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    flags = {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[-1].split()}
    return any(flag in flags for flag in BFLOAT16_CPU_FLAGS)
