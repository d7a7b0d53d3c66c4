"""The denoiser and the observation encoder on OpenVINO or ONNX Runtime: exported to ONNX once per
checkpoint and shape, cached on disk, run without autograd (training, and guided sampling that needs
gradients through the denoiser, stay on torch).

Why: at batch 1 the U-Net's many small 1-D convolutions are dominated by per-op overhead in eager
torch and TorchScript; the exported graph runs 1.5x (ONNX Runtime) to 2.2x (OpenVINO) faster per chunk
on this project's 2-core CPU (bench/inference.py) with outputs equal to torch's within 2e-6. The
encoders gain as much (default DP3's point-cloud encoder 4.7 → 1.4 ms, dp_image's ResNet 71 → 11 ms,
measured beside another job), which matters once a distilled student makes one denoiser call a chunk.

Each exported file of a checkpoint is keyed by a hash of its module's weights and its input shapes, and
kept in ``<checkpoint>/export/`` when that folder is writable, else in
``~/.cache/diffusion_policy_ros/export/``: a changed checkpoint gets a new export, an unchanged one
loads in milliseconds. A model built in memory is exported in memory.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError

log = logging.getLogger(__name__)
BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
_warned = False


def available(backend: str) -> bool:
    """Whether ``backend``'s package imports (torch always does)."""
    if backend == "torch":
        return True
    try:
        __import__(backend)
    except ImportError:
        return False
    return True


# auto: the fastest installed, measured (bench/inference.py): OpenVINO, then ONNX Runtime, then torch.
AUTO_ORDER = ("openvino", "onnxruntime", "torch")


def resolve_backend(name: str) -> str:
    """``auto`` → the fastest installed backend; a named one that is not installed → torch, with one
    log line saying so."""
    global _warned
    if name not in BACKENDS:
        raise ConfigError(f"inference.backend: expected one of {BACKENDS}, got {name!r}")
    if name == "auto":
        return next(b for b in AUTO_ORDER if available(b))
    if available(name):
        return name
    if not _warned:
        _warned = True
        log.warning("inference.backend %s: the %s package is not installed (pip install %s, or the package's "
                    "[fast] extra); running the denoiser on torch", name, name, name)
    return "torch"


def weights_key(module: torch.nn.Module) -> str:
    """A short hash of a module's parameters and buffers (the export is rebuilt when they change)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def cache_dir(checkpoint_dir: Path | None) -> Path:
    if checkpoint_dir is not None:
        d = Path(checkpoint_dir) / "export"
        try:
            d.mkdir(exist_ok=True)
            if os.access(d, os.W_OK):
                return d
        except OSError:
            pass
    d = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "diffusion_policy_ros" / "export"
    d.mkdir(parents=True, exist_ok=True)
    return d


def cached(name: str, module: torch.nn.Module, shapes: str, export, checkpoint_dir: Path | None) -> bytes | str:
    """An ONNX graph made by ``export()``: a cached file's path for a checkpoint (keyed by the module's
    weights and ``shapes``), bytes for an in-memory model."""
    if checkpoint_dir is None:  # a model built in memory (tests, benches): nothing to cache it by
        return export()
    path = cache_dir(checkpoint_dir) / f"{name}-{weights_key(module)}-{shapes}.onnx"
    if not path.is_file():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(export())
        tmp.replace(path)  # atomic: a concurrent reader never sees half a file
        log.info("exported the %s to %s", name, path)
    return str(path)


def onnx_model(denoiser: torch.nn.Module, horizon: int, action_dim: int, cond_dim: int,
               checkpoint_dir: Path | None) -> bytes | str:
    """The denoiser's ONNX graph (see ``cached``)."""
    return cached("denoiser", denoiser, f"h{horizon}-a{action_dim}-c{cond_dim}",
                  lambda: export_denoiser(denoiser, horizon, action_dim, cond_dim), checkpoint_dir)


def _feed(x: torch.Tensor, t, cond: torch.Tensor) -> dict[str, np.ndarray]:
    return {"sample": x.detach().cpu().numpy().astype(np.float32, copy=False),
            "timestep": np.asarray(int(torch.as_tensor(t).reshape(-1)[0]), np.int64),
            "cond": cond.detach().cpu().numpy().astype(np.float32, copy=False)}


def ort_runner(model: bytes | str, threads: int | None = None):
    """feed dict → first output (numpy), on an ONNX Runtime CPU session."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # One thread that sleeps between calls: the sampling loop runs torch ops between denoiser calls,
    # and ONNX Runtime's spinning pool fought torch's threads for the 2 cores (2 spinning threads:
    # a chunk 2x slower than torch; 1 quiet thread: 1.3-1.7x faster, measured on dp3 and dp3:small).
    options.intra_op_num_threads = threads or 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return lambda feed: session.run(None, feed)[0]


def openvino_runner(model: bytes | str, threads: int | None = None):
    """The same, compiled by OpenVINO for the CPU in f32 (its default CPU precision hint may pick
    bf16/f16, 1e-2 away from torch), one inference thread."""
    import openvino as ov

    core = ov.Core()
    graph = core.read_model(model) if isinstance(model, str) else core.read_model(model=model, weights=b"")
    compiled = core.compile_model(graph, "CPU", {"INFERENCE_NUM_THREADS": threads or 1,
                                                 "INFERENCE_PRECISION_HINT": "f32"})
    request, output = compiled.create_infer_request(), compiled.output(0)
    return lambda feed: np.array(request.infer(feed)[output], copy=True)


SESSIONS = {"onnxruntime": ort_runner, "openvino": openvino_runner}


class ExportedDenoiser:
    """``denoiser(sample (B, H, Da), timestep, cond (B, Dc)) → (B, H, Da)`` on an exported backend.
    The batch size is dynamic; one export per (H, Da, Dc)."""

    backend = ""

    def __init__(self, denoiser: torch.nn.Module, horizon: int, action_dim: int, cond_dim: int,
                 checkpoint_dir: Path | None = None, threads: int | None = None):
        self.run = SESSIONS[self.backend](onnx_model(denoiser, horizon, action_dim, cond_dim, checkpoint_dir),
                                          threads)

    def __call__(self, x: torch.Tensor, t, cond: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run(_feed(x, t, cond))).to(x.dtype)


class OrtDenoiser(ExportedDenoiser):
    backend = "onnxruntime"


class OpenVinoDenoiser(ExportedDenoiser):
    backend = "openvino"


RUNNERS = {"onnxruntime": OrtDenoiser, "openvino": OpenVinoDenoiser}


class _Named(torch.nn.Module):
    """The observation encoder with positional inputs in a fixed key order (ONNX has no dict inputs)."""

    def __init__(self, encoder: torch.nn.Module, keys: list[str]):
        super().__init__()
        self.encoder, self.keys = encoder, keys

    def forward(self, *xs):
        return self.encoder(dict(zip(self.keys, xs)))


class ExportedEncoder:
    """``encoder({key: normalised (B, To, ...)}) → (B, To·D)`` on an exported backend; dynamic batch, one
    export per observation shape set."""

    def __init__(self, backend: str, encoder: torch.nn.Module, example: dict[str, torch.Tensor],
                 checkpoint_dir: Path | None = None, threads: int | None = None):
        self.keys = sorted(example)
        shapes = "-".join("x".join(map(str, example[k].shape[1:])) for k in self.keys)
        shapes = hashlib.sha256(f"{self.keys}{shapes}".encode()).hexdigest()[:12]
        model = cached("encoder", encoder, shapes, lambda: export_encoder(encoder, self.keys, example),
                       checkpoint_dir)
        self.run = SESSIONS[backend](model, threads)

    def __call__(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        feed = {k: obs[k].detach().cpu().numpy().astype(np.float32, copy=False) for k in self.keys}
        return torch.from_numpy(self.run(feed))


def export_encoder(encoder: torch.nn.Module, keys: list[str], example: dict[str, torch.Tensor]) -> bytes:
    """The observation encoder as ONNX bytes (float32 inputs in ``keys`` order, dynamic batch, opset 17)."""
    inputs = tuple(example[k][:1].float() for k in keys)
    buf = io.BytesIO()
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_Named(encoder, keys), inputs, buf, input_names=keys, output_names=["cond"],
                              opset_version=17, dynamo=False,
                              dynamic_axes={**{k: {0: "batch"} for k in keys}, "cond": {0: "batch"}})
    finally:
        encoder.train(was_training)
    return buf.getvalue()


def export_denoiser(denoiser: torch.nn.Module, horizon: int, action_dim: int, cond_dim: int) -> bytes:
    """The denoiser as ONNX bytes (float32, dynamic batch, opset 17)."""
    x = torch.zeros(1, horizon, action_dim)
    t = torch.zeros((), dtype=torch.long)
    cond = torch.zeros(1, cond_dim)
    buf = io.BytesIO()
    was_training = denoiser.training
    denoiser.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings and the exporter's deprecation notices
            torch.onnx.export(denoiser, (x, t, cond), buf, input_names=["sample", "timestep", "cond"],
                              output_names=["out"], opset_version=17, dynamo=False,
                              dynamic_axes={"sample": {0: "batch"}, "cond": {0: "batch"}, "out": {0: "batch"}})
    finally:
        denoiser.train(was_training)
    return buf.getvalue()
