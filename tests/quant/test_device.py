"""Device resolution (auto | cpu | cuda): clear errors before work starts, auto falls back and says so,
and a `--device cuda` conversion through the Triton kernels writes the same bytes as the CPU run."""
from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest
import torch

from dshub.quant import device as qd
from dshub.quant.device import CudaState, DeviceNameError, DeviceUnavailable, resolve_device

HAS_GPU = torch.cuda.is_available()
needs_kernels = pytest.mark.usefixtures("triton_kernels")  # fails, with the reason, where the kernels cannot run
NO_GPU_ONLY = pytest.mark.skipif(HAS_GPU, reason="checks the answer on a machine without a CUDA GPU; this one has one")


@pytest.fixture
def no_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


def fake_gpu(free_gib: float) -> CudaState:
    return CudaState(True, name="Test GPU", free_bytes=int(free_gib * 2**30), total_bytes=80 * 2**30)


def never_probe() -> CudaState:
    raise AssertionError("cpu must not probe the GPU")


def test_unknown_name_is_a_usage_error():
    with pytest.raises(DeviceNameError, match="choose one of auto, cpu, cuda") as e:
        resolve_device("gpu")
    assert isinstance(e.value, ValueError)


def test_cpu_never_touches_the_gpu():
    assert resolve_device("cpu", largest_bytes=10**15, probe=never_probe) == "cpu"


@NO_GPU_ONLY
def test_cuda_without_a_gpu_fails_with_the_reason(no_interpreter):
    with pytest.raises(DeviceUnavailable, match=r"--device cuda: .*(no CUDA|CUDA support).*use --device cpu"):
        resolve_device("cuda")


@NO_GPU_ONLY
def test_auto_without_a_gpu_falls_back_and_says_so(no_interpreter, capsys):
    assert resolve_device("auto") == "cpu"
    err = capsys.readouterr().err
    assert err.startswith("note: --device auto:") and "converting on the CPU" in err


def test_too_little_gpu_memory_for_the_largest_tensor():
    big = 3 * 2**30  # needs WORKING_FACTOR x 3 GiB
    with pytest.raises(DeviceUnavailable, match=r"Test GPU has 8\.0 GiB free; the largest tensor \(3\.00 GiB\) needs about 12\.0 GiB"):
        resolve_device("cuda", largest_bytes=big, probe=lambda: fake_gpu(8))
    notes: list[str] = []
    assert resolve_device("auto", largest_bytes=big, probe=lambda: fake_gpu(8), note=notes.append) == "cpu"
    assert "12.0 GiB" in notes[0]
    assert resolve_device("cuda", largest_bytes=big, probe=lambda: fake_gpu(13)) == "cuda"


def test_gpu_without_triton_is_not_usable(monkeypatch, no_interpreter):
    monkeypatch.setattr(qd, "triton_installed", lambda: False)
    state = qd.probe_cuda()
    assert not state.usable and "pip install 'dshub[gpu]'" in state.reason
    with pytest.raises(DeviceUnavailable, match="triton is not installed"):
        resolve_device("cuda")


@needs_kernels
def test_interpreter_is_a_device_for_cuda_but_not_for_auto(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert qd.probe_cuda().usable and resolve_device("cuda", largest_bytes=2**40) == "cuda"
    assert qd.torch_device("cuda").type == "cpu"
    notes: list[str] = []
    assert resolve_device("auto", note=notes.append) == "cpu" and "only --device cuda" in notes[0]


# ------------------------------------------------------------------ through the CLI
@NO_GPU_ONLY
def test_cli_cuda_without_gpu_exits_1_before_writing(cli, tiny_ckpt: Path, tmp_path: Path, no_interpreter):
    out = tmp_path / "out"
    r = cli("convert", tiny_ckpt, "--to", "bf16", "--out", out, "--device", "cuda")
    assert r.exit_code == 1
    assert "--device cuda:" in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert not out.exists()


def test_cli_unknown_device_exits_2(cli, tiny_ckpt: Path, tmp_path: Path):
    r = cli("convert", tiny_ckpt, "--to", "bf16", "--out", tmp_path / "o", "--device", "tpu")
    assert r.exit_code == 2 and "choose one of" in r.stderr


@needs_kernels
def test_cli_cuda_conversion_is_byte_identical_to_cpu(cli, tiny_ckpt: Path, tiny_bf16: Path, tmp_path: Path):
    """On a GPU machine this runs the kernels on the GPU; in CI, in the Triton interpreter."""
    out = tmp_path / "cuda"
    r = cli("convert", tiny_ckpt, "--to", "bf16", "--out", out, "--device", "cuda", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["device"] == "cuda"
    files = sorted(p.name for p in tiny_bf16.iterdir())
    assert files == sorted(p.name for p in out.iterdir()) and any(f.endswith(".safetensors") for f in files)
    _, mismatch, errors = filecmp.cmpfiles(tiny_bf16, out, files, shallow=False)
    assert not mismatch and not errors


@pytest.mark.slow
@needs_kernels
def test_cli_int4_cuda_conversion_is_byte_identical_to_cpu(cli, tiny_ckpt: Path, tmp_path: Path):
    """INT4 (compressed-tensors) through the Triton quantize and pack kernels (interpreter in CI: ~20 s of CPU)."""
    outs = {}
    for device in ("cpu", "cuda"):
        outs[device] = tmp_path / device
        r = cli("convert", tiny_ckpt, "--to", "int4", "--out", outs[device], "--device", device, "--json")
        assert r.exit_code == 0, r.output
    files = sorted(p.name for p in outs["cpu"].iterdir())
    assert files == sorted(p.name for p in outs["cuda"].iterdir())
    _, mismatch, errors = filecmp.cmpfiles(outs["cpu"], outs["cuda"], files, shallow=False)
    assert not mismatch and not errors
