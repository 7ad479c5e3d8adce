"""What `vaegan doctor` and `vaegan bench` say about the CPU: the running architecture's features only."""

import platform

from vaegan.core import cpu

ARM_ON_X86_HOST = """processor\t: 0
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni
"""
ARM_BOARD = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp i8mm bf16
"""


def _as(monkeypatch, machine: str, text: str) -> None:
    monkeypatch.setattr(platform, "machine", lambda: machine)
    monkeypatch.setattr(cpu, "cpuinfo", lambda: text)


def test_an_arm_board_names_neon_dot_product_and_i8mm(monkeypatch):
    _as(monkeypatch, "aarch64", ARM_BOARD)
    assert cpu.isa_summary() == "asimddp i8mm bf16"
    assert "asimddp" in cpu.int8_outlook() and "i8mm" in cpu.int8_outlook()


def test_emulated_arm_never_reports_the_hosts_x86_flags(monkeypatch):
    _as(monkeypatch, "aarch64", ARM_ON_X86_HOST)
    assert cpu.cpu_flags() == set() and cpu.isa_summary() == "aarch64"
    assert "avx" not in cpu.int8_outlook().lower() and "vnni" not in cpu.int8_outlook().lower()


def test_x86_reports_vnni_or_says_int8_gains_less(monkeypatch):
    _as(monkeypatch, "x86_64", ARM_ON_X86_HOST)
    assert cpu.isa_summary() == "avx2 avx512f avx512_vnni" and "VNNI" in cpu.int8_outlook()
    _as(monkeypatch, "x86_64", "flags\t\t: fpu sse2 avx2\n")
    assert "without VNNI" in cpu.int8_outlook()
