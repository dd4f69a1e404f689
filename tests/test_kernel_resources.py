"""ptxas resources: parsing, the committed data/kernel_resources.json, nvcc and NVRTC.

The compiler tests compile every tiled instantiation and a blocked subset for one architecture
(a few seconds); ``python -m gemmperf.collect.kernel_resources`` compiles everything for all.
"""

from __future__ import annotations

import shutil

import pytest

from gemmperf.collect import kernel_resources as kr
from gemmperf.collect import kernel_space as ks
from gemmperf.collect import ptxas

# ptxas -v output of CUDA 13.0 for two entries (the format the parser reads).
_BLOCKED = "_Z13blocked_sgemmILi64ELi64ELi16ELi4ELi4ELi1EEvPKfS1_Pfiiiff"
_TILED = "_Z11tiled_sgemmILi1EEvPKfS1_Pfiiiff"
PTXAS_LOG = f"""\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '{_BLOCKED}' for 'sm_89'
ptxas info    : Function properties for {_BLOCKED}
    0 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 46 registers, used 1 barriers, 8192 bytes smem, 396 bytes cmem[0]
ptxas info    : Compile time = 76.365 ms
ptxas info    : Compiling entry function '{_TILED}' for 'sm_89'
ptxas info    : Function properties for {_TILED}
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 16 registers, 396 bytes cmem[0]
"""

#: Blocked instantiations compiled in the nvcc test: every stage count, thread tile and BK.
NVCC_BLOCKED_SUBSET = [
    ks.BlockedParams(128, 128, 8, 8, 8, 2),
    ks.BlockedParams(64, 64, 16, 4, 4, 1),
    ks.BlockedParams(32, 64, 32, 4, 8, 2),
    ks.BlockedParams(128, 64, 16, 8, 4, 1),
]
TEST_ARCH = "sm_89"


def test_demangle_integer_template_arguments():
    assert ptxas.demangle_instantiation("_Z11tiled_sgemmILi16EEvPKfS1_Pfiiiff") == \
        "tiled_sgemm<16>"
    assert ptxas.demangle_instantiation(
        "_Z13blocked_sgemmILi128ELi64ELi8ELi8ELi4ELi2EEvPKfS1_Pfiiiff") == \
        "blocked_sgemm<128, 64, 8, 8, 4, 2>"
    assert ptxas.demangle_instantiation("_Z1fILin3EEvv") == "f<-3>"
    assert ptxas.demangle_instantiation("_Z6squarei") == "square"


def test_parse_ptxas_verbose():
    found = ptxas.parse_ptxas_verbose(PTXAS_LOG, "sm_89")
    blocked = found["blocked_sgemm<64, 64, 16, 4, 4, 1>"]
    assert (blocked.registers, blocked.smem_bytes, blocked.barriers) == (46, 8192, 1)
    assert (blocked.spill_store_bytes, blocked.spill_load_bytes) == (8, 12)
    tiled = found["tiled_sgemm<1>"]
    assert (tiled.registers, tiled.smem_bytes, tiled.barriers) == (16, 0, None)
    with pytest.raises(Exception, match="expected sm_90"):
        ptxas.parse_ptxas_verbose(PTXAS_LOG, "sm_90")


def test_instantiation_source_lists_every_configuration():
    text = ptxas.instantiation_source("blocked")
    assert text.count("template __global__ void blocked_sgemm<") == len(ks.blocked_space())
    assert str(ks.source_path("blocked").resolve()) in text


def test_cli_rejects_a_malformed_arch(capsys):
    assert kr.main(["--arch", "89"]) == 2
    assert "must look like sm_89" in capsys.readouterr().err


# ---- the committed table -------------------------------------------------------------------

@pytest.fixture(scope="module")
def table():
    return kr.load_table()


def test_table_is_current_for_the_kernel_sources(table):
    for family in ks.FAMILIES:
        assert table["source_sha256"][family] == kr.source_sha256(family), (
            f"kernels/{family}.cu changed since data/kernel_resources.json was generated: run "
            "python -m gemmperf.collect.kernel_resources")


def test_table_covers_every_instantiation_with_sane_numbers(table):
    assert set(table["compilers"]) == {"nvcc", "nvrtc"}
    names = {ks.kernel_name_of(p): p for f in ks.FAMILIES for p in ks.family_params(f)}
    for compiler, section in table["compilers"].items():
        assert section["version"]
        assert {"sm_80", "sm_89", "sm_90"} <= set(section["archs"]), compiler
        for arch, entry in section["archs"].items():
            assert "-Xptxas" in entry["commands"]["blocked"]
            assert set(entry["kernels"]) == set(names), (compiler, arch)
            for name, res in entry["kernels"].items():
                params = names[name]
                # ptxas allocates exactly the static __shared__ arrays of the kernel.
                assert res["smem_bytes"] == params.smem_bytes, (compiler, arch, name)
                # A thread holds at least its TM x TN (tiled: 1) accumulators; 255 is the cap.
                acc = params.tm * params.tn if isinstance(params, ks.BlockedParams) else 1
                assert acc < res["registers"] <= 255, (compiler, arch, name)
                assert res["spill_store_bytes"] >= 0 and res["stack_bytes"] >= 0


def test_lookup_prefers_nvrtc_and_falls_back_by_arch(table):
    config = ks.TiledParams(16).config()
    default = kr.lookup(config, "sm_89", table=table)
    nvrtc = table["compilers"]["nvrtc"]["archs"]["sm_89"]["kernels"]["tiled_sgemm<16>"]
    assert default.arch == "sm_89" and default.as_json() == nvrtc
    nvcc = kr.lookup(config, "sm_89", compiler="nvcc", table=table)
    assert nvcc.smem_bytes == default.smem_bytes == 2048
    assert kr.lookup(config, "sm_87", table=table) is None
    fallback = kr.lookup(config, "sm_87", same_major=True, table=table)
    assert fallback is not None and fallback.arch == "sm_86"
    assert kr.lookup(config, "sm_70", same_major=True, table=table) is None
    assert kr.lookup("tiled_sgemm<3>", "sm_89", table=table) is None


# ---- nvcc ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nvcc():
    path = shutil.which("nvcc")
    if path is None:
        pytest.skip("nvcc is not installed")
    return path


@pytest.fixture(scope="module")
def fresh(nvcc):
    """One nvcc call per family for TEST_ARCH (all tiled, a blocked subset)."""
    tiled, cmd, _ = ptxas.nvcc_resources("tiled", TEST_ARCH, nvcc=nvcc)
    blocked, _, _ = ptxas.nvcc_resources("blocked", TEST_ARCH, NVCC_BLOCKED_SUBSET, nvcc=nvcc)
    return {**tiled, **blocked}, cmd


def test_nvcc_compiles_every_instantiation_cleanly(fresh):
    found, cmd = fresh
    assert len(found) == len(ks.TILED_TILES) + len(NVCC_BLOCKED_SUBSET)
    assert f"-arch={TEST_ARCH}" in cmd and "-ftz=true" in cmd
    for res in found.values():
        assert res.arch == TEST_ARCH
        assert res.spill_store_bytes == 0 and res.stack_bytes == 0, res


def test_committed_table_matches_a_fresh_compile(fresh, table, nvcc):
    section = table["compilers"]["nvcc"]
    version = ptxas.nvcc_version(nvcc)
    if version != section["version"]:
        pytest.skip(f"table made with nvcc {section['version']}, this is {version}")
    entry = section["archs"][TEST_ARCH]
    found, _ = fresh
    for name, res in found.items():
        assert entry["kernels"][name] == res.as_json(), name


def test_a_static_assert_is_a_compile_error(nvcc):
    bad = ks.BlockedParams(32, 32, 8, 8, 8, 1)       # 16 threads: fails the kernel's asserts
    with pytest.raises(ptxas.CompileError, match="nvcc failed for blocked on sm_89"):
        ptxas.nvcc_resources("blocked", TEST_ARCH, [bad], nvcc=nvcc)


def test_committed_nvrtc_section_matches_a_fresh_nvrtc_compile(table):
    pytest.importorskip("cupy")
    from gemmperf.collect.cupy_support import nvrtc_version
    from gemmperf.errors import BackendUnavailableError

    try:
        version = ".".join(map(str, nvrtc_version()))
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))
    section = table["compilers"]["nvrtc"]
    if version != section["version"]:
        pytest.skip(f"table made with NVRTC {section['version']}, this is {version}")
    found, options, _ = ptxas.nvrtc_resources("tiled", TEST_ARCH)
    assert "-Xptxas=-v" in options
    entry = section["archs"][TEST_ARCH]["kernels"]
    for name, res in found.items():
        assert entry[name] == res.as_json(), name
