"""The CPU's instruction sets behind the benchmarks' figures (mobileone_dense/utils/cpu.py) and
the latency benchmark's note for a CPU without int8 dot products."""
import platform

from mobileone_dense.benchmark.common import machine_info
from mobileone_dense.benchmark.latency import notes
from mobileone_dense.utils import cpu

ARM_CPUINFO = ('processor\t: 0\nBogoMIPS\t: 50.00\n'
               'Features\t: fp asimd evtstrm aes pmull sha1 crc32 atomics asimddp i8mm bf16\n'
               'CPU implementer\t: 0x41\n')


def test_x86_int8_dot_products_come_from_torchs_capabilities(monkeypatch):
    monkeypatch.setattr(cpu, 'capabilities', lambda: {'avx2': True, 'avx512_vnni': True,
                                                      'avx_vnni': False})
    monkeypatch.setattr(platform, 'machine', lambda: 'x86_64')
    assert cpu.int8_dot_instructions() == ['AVX512-VNNI']
    monkeypatch.setattr(cpu, 'capabilities', lambda: {'avx2': True, 'cpu_name': 'AMD EPYC'})
    assert cpu.int8_dot_instructions() == []
    assert cpu.cpu_name() == 'AMD EPYC'


def test_arm_int8_dot_products_come_from_cpuinfo(monkeypatch, tmp_path):
    info = tmp_path / 'cpuinfo'
    info.write_text(ARM_CPUINFO)
    monkeypatch.setattr(cpu, 'capabilities', lambda: {})
    monkeypatch.setattr(platform, 'machine', lambda: 'aarch64')
    assert cpu.int8_dot_instructions(info) == ['Arm dotprod', 'Arm I8MM']
    info.write_text(ARM_CPUINFO.replace(' asimddp i8mm', ''))
    assert cpu.int8_dot_instructions(info) == []
    assert cpu.int8_dot_instructions(tmp_path / 'missing') == []


def test_machine_info_names_the_instruction_sets():
    info = machine_info()
    assert info['cpu_name'] and info['cores'] >= 1
    assert info['int8_dot'] == cpu.int8_dot_instructions()
    assert info['bf16'] == cpu.bf16_instructions()


def test_latency_notes_a_cpu_without_int8_dot_products():
    without = notes({}, dict(cpu='x86_64', cpu_name='AMD EPYC', int8_dot=[]))
    assert any('AMD EPYC' in n and 'no int8 dot-product instructions' in n for n in without)
    assert notes({}, dict(cpu='x86_64', cpu_name='Xeon', int8_dot=['AVX512-VNNI'])) == []
