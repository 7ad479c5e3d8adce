"""What this CPU can do for the engines' kernels, from /proc/cpuinfo (read once): x86's flags
(AVX2, AVX-512, VNNI, bf16, AMX) or ARM's features (NEON dot product, int8 matrix multiply, bf16)."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

# the features that decide the int8 and bf16 kernels, in the order they matter
ISA_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_bf16",
    "amx_int8",
    "asimddp",
    "i8mm",
    "bf16",
)


@functools.cache
def cpuinfo() -> str:
    """/proc/cpuinfo, read once per process; empty where there is none (not Linux)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def is_arm() -> bool:
    return platform.machine().lower() in ("aarch64", "arm64")


def cpu_flags() -> set[str]:
    """The CPU's feature flags: x86's "flags" line, or ARM's "Features" line on ARM; empty where
    unknown. Only the running architecture's line counts: under user-mode emulation (qemu-aarch64 on
    x86) /proc/cpuinfo is the host's, and its x86 flags say nothing about the emulated CPU."""
    key = "Features" if is_arm() else "flags"
    for line in cpuinfo().splitlines():
        if line.startswith(key):
            return set(line.split(":", 1)[1].split())
    return set()


def isa_summary() -> str:
    """The matmul-relevant features present, e.g. "avx2 avx512f avx512_vnni avx512_bf16 amx_bf16
    amx_int8" (x86) or "asimddp i8mm" (ARM); the machine's name where none is known."""
    flags = cpu_flags()
    return " ".join(f for f in ISA_FLAGS if f in flags) or platform.machine()


def int8_outlook() -> str:
    """What int8 can gain here over fp32, by the instructions the CPU has."""
    flags = cpu_flags()
    if flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        return "int8 dot-product instructions (VNNI/AMX): int8 can run 2-3x fp32"
    if "asimddp" in flags:
        return (
            "NEON dot product (asimddp)"
            + (" and int8 matmul (i8mm)" if "i8mm" in flags else "")
            + ": int8 pays"
        )
    if "avx2" in flags:
        return "AVX2 without VNNI: int8 needs three instructions per dot product, gains less (about 1.5x)"
    if is_arm():
        return "no ARM features reported (emulated?): NEON dot product (asimddp) is what makes int8 pay"
    return "no int8 dot-product instructions reported"
