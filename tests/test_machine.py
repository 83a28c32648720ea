"""Tests of src.machine: native bfloat16 read from the CPU's flags."""

from src import machine


def write_cpuinfo(path, flags):
    path.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    return path


def test_cpu_computes_bfloat16_reads_the_flags(tmp_path):
    assert machine.cpu_computes_bfloat16(write_cpuinfo(tmp_path / "amx", "fpu sse2 avx2 amx_bf16 amx_tile"))
    assert machine.cpu_computes_bfloat16(write_cpuinfo(tmp_path / "avx512", "fpu sse2 avx2 avx512_bf16"))
    assert not machine.cpu_computes_bfloat16(write_cpuinfo(tmp_path / "none", "fpu sse2 avx2 avx512f amx_tile"))
    assert not machine.cpu_computes_bfloat16(tmp_path / "missing")
