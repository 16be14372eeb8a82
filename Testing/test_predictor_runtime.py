"""Devices and runs: out-of-memory fallback, half precision only on the GPU, cancelling, progress,
and the fast mode's layout handling."""

import numpy as np
import pytest
import torch

import DKOARSegmentationLib.model.sliding_window as sliding_window
from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.model.bundle import load_bundle
from DKOARSegmentationLib.model.loading import load_model
from DKOARSegmentationLib.model.predict_options import PredictOptions
from DKOARSegmentationLib.model.predictor import predict_labels
from DKOARSegmentationLib.model.sliding_window import Footprint, footprints
from DKOARSegmentationLib.progress import Cancelled, Progress
from DKOARSegmentationLib.volume import Volume
from Testing.model_factory import make_model_folder


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    folder = make_model_folder(tmp_path_factory.mktemp("runtime") / "m")
    return load_model(load_bundle(folder), torch.device("cpu"))


@pytest.fixture(scope="module")
def small_ct():
    rng = np.random.default_rng(1)
    voxels = np.full((20, 36, 84), -1000, np.int16)  # resampled to the model: 3 windows along x
    voxels[2:18, 3:33, 2:82] = rng.normal(40, 200, (16, 30, 80)).astype(np.int16)
    return Volume(voxels, np.diag([3.0, 3.0, 4.0, 1.0]))


def _oom():
    error = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return error("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_footprints_shrink_then_go_to_the_cpu():
    assert footprints(torch.device("cpu"), PredictOptions()) == [Footprint(torch.device("cpu"), False, 1)]
    tries = footprints(torch.device("cuda"), PredictOptions(windows_per_batch=4))
    assert tries == [Footprint(torch.device("cuda"), True, 4), Footprint(torch.device("cuda"), False, 1),
                     Footprint(torch.device("cpu"), False, 1)]


def test_out_of_memory_retries_smaller_then_on_the_cpu(small_model, small_ct, monkeypatch):
    expected = predict_labels(small_model, small_ct)
    real = sliding_window.sliding_window_logits
    seen = []

    def fake_gpu(model, image, progress=None, options=None, fp=None, **kw):
        seen.append(fp)
        if fp.device.type == "cuda":
            raise _oom()
        return real(model, image, progress, options, fp, **kw)

    monkeypatch.setattr(sliding_window, "sliding_window_logits", fake_gpu)
    small_model.device = torch.device("cuda")  # a fake GPU: every pass on it runs out of memory
    small_model.messages.clear()
    try:
        labels = predict_labels(small_model, small_ct, options=PredictOptions(windows_per_batch=2))
    finally:
        small_model.device = torch.device("cpu")
    assert [f.describe() for f in seen] == ["cuda, sums on the device, 2 window(s) at a time",
                                           "cuda, sums on the CPU, 1 window(s) at a time",
                                           "cpu, sums on the CPU, 1 window(s) at a time"]
    assert np.array_equal(labels, expected)
    assert len(small_model.messages) == 2 and all("ran out of memory" in m for m in small_model.messages)
    assert "retrying with cpu" in small_model.messages[-1]
    assert all(p.device.type == "cpu" for net in small_model.networks for p in net.parameters())


def test_smaller_footprint_on_the_gpu_is_tried_before_the_cpu(small_model, small_ct, monkeypatch):
    real = sliding_window.sliding_window_logits
    seen = []

    def fake_gpu(model, image, progress=None, options=None, fp=None, **kw):
        seen.append(fp)
        if fp.results_on_device:
            raise RuntimeError("CUDA error: out of memory")
        return real(model, image, progress, options, Footprint(torch.device("cpu"), False, fp.batch), **kw)

    monkeypatch.setattr(sliding_window, "sliding_window_logits", fake_gpu)
    small_model.device = torch.device("cuda")
    small_model.messages.clear()
    try:
        predict_labels(small_model, small_ct)
    finally:
        small_model.device = torch.device("cpu")
    assert [(f.device.type, f.results_on_device) for f in seen] == [("cuda", True), ("cuda", False)]
    assert len(small_model.messages) == 1


def test_other_errors_are_not_retried_and_cpu_oom_is_one_clear_error(small_model, small_ct, monkeypatch):
    calls = []

    def broken(model, image, progress=None, options=None, fp=None, **kw):
        calls.append(fp)
        raise ValueError("a bug")

    monkeypatch.setattr(sliding_window, "sliding_window_logits", broken)
    with pytest.raises(ValueError):
        predict_labels(small_model, small_ct)
    assert len(calls) == 1

    def no_memory(model, image, progress=None, options=None, fp=None, **kw):
        raise _oom()

    monkeypatch.setattr(sliding_window, "sliding_window_logits", no_memory)
    with pytest.raises(DKOARError, match="out of memory on cpu even with the smallest footprint"):
        predict_labels(small_model, small_ct)


def test_half_precision_only_on_the_gpu(small_model, small_ct, monkeypatch):
    used = []
    real_autocast = torch.autocast

    def spy(device_type, dtype=None, enabled=True, **kw):
        used.append((device_type, dtype, enabled))
        return real_autocast(device_type, dtype=dtype, enabled=enabled, **kw)

    monkeypatch.setattr(torch, "autocast", spy)
    a = predict_labels(small_model, small_ct, options=PredictOptions(half_precision=True))
    assert used and all(not enabled for _, _, enabled in used)  # never on the CPU
    b = predict_labels(small_model, small_ct, options=PredictOptions(half_precision=False))
    assert np.array_equal(a, b)


def test_cancel_stops_a_run(small_model, small_ct):
    seen = []

    def callback(stage, fraction, message):
        seen.append((stage, message))
        if stage == "inference" and message.startswith("window 2/"):
            progress.cancel()

    progress = Progress(callback)
    with pytest.raises(Cancelled):
        predict_labels(small_model, small_ct, progress)
    windows = [m for s, m in seen if s == "inference" and m.startswith("window")]
    total = int(windows[0].split("/")[1])
    assert len(windows) == 2 < total  # stopped at the next window, not at the end
    assert not any(s == "resampling" for s, _ in seen)


def test_progress_reports_every_stage_to_the_end(small_model, small_ct):
    seen = []
    predict_labels(small_model, small_ct, Progress(lambda s, f, m: seen.append((s, f))))
    assert [s for s, _ in seen if _ == 0.0][:1] == ["preprocessing"]
    assert max(f for s, f in seen if s == "inference") == 1.0
    assert seen[-1] == ("resampling", 1.0)


def test_fast_mode_handles_any_array_layout(small_model, small_ct):
    """The fast mode lays every series out canonically: the label map of a flipped and transposed
    copy of the CT is the same map, flipped and transposed."""
    reference = predict_labels(small_model, small_ct)
    flipped = Volume(np.ascontiguousarray(small_ct.voxels[::-1, :, ::-1]), small_ct.affine.copy())
    flipped.affine[:3, 0] *= -1
    flipped.affine[:3, 2] *= -1
    flipped.affine[:3, 3] = small_ct.index_to_lps(np.array([small_ct.shape[2] - 1, 0, small_ct.shape[0] - 1]))
    labels = predict_labels(small_model, flipped)
    assert np.array_equal(labels[::-1, :, ::-1], reference)


def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    from types import SimpleNamespace

    from DKOARSegmentationLib.model.devices import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends, "mps", SimpleNamespace(is_available=lambda: True))
    assert resolve_device("auto").type == "mps"
    assert resolve_device("mps").type == "mps"
    monkeypatch.setattr(torch.backends, "mps", SimpleNamespace(is_available=lambda: False))
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(DKOARError, match="MPS is not available"):
        resolve_device("mps")


def test_fused_cpu_graph_gives_the_eager_networks_result(small_model, small_ct):
    small_model._cpu_graphs.clear()
    fused = predict_labels(small_model, small_ct, options=PredictOptions(optimise_cpu=True))
    assert small_model._cpu_graphs and all(isinstance(g, torch.jit.ScriptModule)
                                           for g in small_model._cpu_graphs.values())
    eager = predict_labels(small_model, small_ct, options=PredictOptions(optimise_cpu=False))
    assert np.mean(fused == eager) > 0.999  # float32 rounding only (these untrained networks have near ties)
