r"""Perturbation explainers: ScoreCAM, AblationCAM, occlusion and RISE — batched, seeded, budgeted.

Each method registers a small class in :data:`~fakelens.explain.engine.EXPLAINERS`; the engine calls it as
``explainer(detector, x, target, layers) -> (raw (B, h, w), meta)``. Shared machinery (:class:`Perturbation`):

- one unperturbed forward per call (its scores, probabilities and layer outputs are reused; never re-run
  per chunk); the perturbed inputs of *all* images are pooled into chunks of ``batch_size`` — batch 1 and
  batch B cost the same per image;
- ``torch.inference_mode()``, eval mode (train/eval flags restored after), hooks and patched forwards
  removed in ``finally`` — also when the model raises;
- ``batch_size=None`` picks the chunk: on CUDA from free memory and the largest activation of the
  unperturbed pass, on CPU a fixed 32 inputs of 224² (scaled by the pixel count);
- ``amp``: ``"auto"`` (default) runs the perturbed forwards in fp16 on CUDA where fp16 reproduces the
  full-precision scores of this model and input: the first chunk runs in full precision and 16 of its inputs
  also in fp16; fp16 serves the later chunks when its scores are within 1 % of the chunk's score spread
  (``meta["amp_probe"]``; ``meta["exact"]`` stays true; AblationCAM and single chunks stay in full
  precision); on the CPU full precision. fp16 has TF32's 10-bit mantissa (cuDNN's TF32 convolutions are
  PyTorch's default): on an H200, exact ScoreCAM of a ResNet-50 is 3.7e-4 (max, normalised map) from
  strict fp32 in fp16 and 4.6e-4 in TF32. ``"bf16"``/``"fp16"`` force autocast unchecked (lossy:
  ``meta["exact"]`` is then false; fp16 needs CUDA, bf16 also runs on CPUs with native bf16; bf16 keeps 7
  mantissa bits: its maps were up to 0.14 off on the shipped CNN); ``None`` never autocasts. A chunk whose
  logits come out non-finite under autocast (fp16 overflows above 65504) runs again in full precision,
  counted in ``meta["amp_fallbacks"]``;
- ``channels_last=True`` hands 4-D inputs to the model in channels-last layout (the model is not
  touched); on CPU (oneDNN) and GPU (cuDNN) the convolutions then skip layout conversions;
- ``fold_bn`` (ScoreCAM, occlusion, RISE, spectral): the perturbed forwards, which need no hooks, run on a
  *copy* of the network traced by ``torch.fx`` with BatchNorm folded into the preceding convolutions
  (:func:`fakelens.models.fold.fold_batchnorm`, timm's ``Conv2dSame``/``BatchNormAct2d`` included: the
  shipped ``effnet-lite0``'s exact ScoreCAM on one 256-px tile 21.8 → 11.9 s) and weights in
  channels-last layout — the same function up to float rounding (the copy must reproduce the
  unperturbed logits to 1e-4, else it is not used); ``None`` = on the CPU, when the model has BatchNorm
  and at least 256 forwards are planned (on an H200 a copy made per call cost more than it saved; the
  cached copy is not yet measured there: opt in with ``fold_bn=True``); the copy is cached per model
  until a parameter or buffer changes (:func:`clear_folded` drops it); ``meta["fold_bn"]`` says whether
  it was used;
- ``compile`` (ScoreCAM, occlusion, RISE, spectral; opt-in): the full chunks of perturbed forwards run
  through ``torch.compile`` (Inductor with weight freezing: convolutions fused with their BatchNorm and
  pointwise epilogues) of the folded copy or the network, one static shape per chunk size; partial chunks
  and single inputs stay eager. Same precision as eager (checked on the first chunk against the eager
  forward to 1e-4, else not used). The compiled graph is cached with the folded copy; the first call pays
  the compilation (15 s for ResNet-18 on 2 CPU cores), so it pays off over many images. Measured: exact
  ScoreCAM on ResNet-18, 2 CPU cores, 9.92 → 9.11 s per image; on an H100 nothing (ResNet-50 0.276 vs
  0.275 s compiled from the folded copy; compiled from the unfolded network, cuDNN's TF32 rounding put it
  beyond the 1e-4 check and it fell back to eager). ``meta["compiled"]`` says whether it ran;
- ``workers`` (ScoreCAM, occlusion, RISE, spectral; CPU): each chunk of hook-free forwards is split into
  ``workers`` parts run side by side on threads, each with its share of the intra-op threads
  (:func:`split_forward`); ``None`` = 2 where the forwards run eagerly in full precision on at least 2
  threads, every part holds at least 4 inputs and the model has no hooks, else 1. The same function (the
  parts are independent); exact ScoreCAM on 2 CPU cores: ResNet-18 5–10 % faster, the shipped
  ``vit-tiny-reg4-npr`` on a 256-px tile 11.0 → 8.1 s (``benchmarks/RESULTS.md``). ``meta["workers"]``
  says how many ran;
- ``autotune`` (CUDA): cuDNN's autotuner (``torch.backends.cudnn.benchmark``) during the perturbed
  forwards, the global flag restored after; off by default (on an H200 with ResNet-50 it saved nothing
  and cost 3 s on the first call); never where deterministic algorithms were asked for;
- a budget option per method (``top_k`` channels, ``n_masks``, ``stride``) reported in ``meta`` with the
  number of forwards, and a ``seed`` for sampled methods (a local ``torch.Generator`` on the input's device:
  same seed and device → identical maps).

Exact shortcuts (no approximation): ScoreCAM skips channels that are constant over the map (their
normalised mask is 0, so their masked input *is* the baseline and their score is the baseline score);
AblationCAM skips channels that are already all zero (ablating them changes nothing), and runs only the
part of the network *after* the layer (see :class:`AblationCAM`).

Where masks meet the image (``fill``): ``"mean"`` multiplies the *normalised* input by the mask, i.e. blends
towards the normalisation mean colour (what the papers' code and both peers do); ``"black"`` blends towards
black *pixels* ``(0 − mean) / std``; ``"blur"`` towards a Gaussian blur of the image (blur and the per-channel
affine normalisation commute, so blurring the normalised input equals normalising the blurred pixels).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypedDict, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fakelens.errors import ConfigError
from fakelens.explain.capture import _as_map, frozen
from fakelens.explain.engine import EXPLAINERS
from fakelens.explain.explanation import fuse_layers
from fakelens.explain.targets import ClassLogit, Target, TopClass
from fakelens.models.base import Detector
from fakelens.models.fold import (
    accepts_channels_last,
    agrees,
    clear_folded_copies,
    folded_copy,
    has_hooks,
    state_signature,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

Amp = Literal["bf16", "fp16"]
AmpPolicy = Literal["auto", "bf16", "fp16"]
Fill = Literal["mean", "black", "blur"]
_R = TypeVar("_R")


class RunOptions(TypedDict, total=False):
    """Options every perturbation method takes (see the module docstring)."""

    batch_size: int | None
    amp: AmpPolicy | None
    seed: int
    channels_last: bool


class FastOptions(RunOptions, total=False):
    """Plus the options of the methods whose perturbed forwards need no hooks."""

    fold_bn: bool | None
    autotune: bool | None
    compile: bool
    workers: int | None


CPU_CHUNK_AT_224 = 32
"""Default chunk on CPU for 224×224 inputs (scaled by the pixel count); measured on 2 Zen 4 cores."""
MAX_CHUNK = 512
"""Upper bound of the automatic chunk size."""
AMP_PROBE_INPUTS = 16
"""``amp="auto"``: perturbed inputs of the first chunk scored at both precisions (smaller chunks wait)."""
AMP_PROBE_TOL = 1e-2
"""``amp="auto"`` takes fp16 where its scores are within this share of the full-precision chunk's spread."""
FOLD_MIN_FORWARDS = 256
"""With ``fold_bn=None``, fold BatchNorm into a model copy when at least this many forwards are planned."""
MIN_WORKER_BATCH = 4
"""With ``workers=None``, split a chunk over threads only when every part holds at least this many inputs."""


# --------------------------------------------------------------------------------------------- runner


@dataclass
class Runner:
    """Runs (perturbed) batches through the detector: autocast, layout, chunk size and forward counts."""

    detector: Detector
    target: Target
    amp: Amp | None = None
    channels_last: bool = True
    batch_size: int = CPU_CHUNK_AT_224
    forwards: int = 0
    partial_forwards: int = 0
    folded: Callable[[Tensor], Any] | None = None
    reference: Tensor | None = None
    autotune: bool = False
    compiled: _Compiled | None = None
    compiled_forwards: int = 0
    amp_fallbacks: int = 0
    amp_candidate: Amp | None = None  # amp="auto": tried on the first large enough chunk of score()
    probe: dict[str, Any] | None = None
    workers: int = 1
    label: str = ""
    planned: int = 0
    report: Progress | None = field(default_factory=lambda: _PROGRESS.get())  # see reporting()

    def fold(self, x: Tensor, logits: Tensor, planned: int, policy: bool | None) -> bool:
        """Use a copy of the detector with BatchNorm folded into the preceding convolutions (and, with
        ``channels_last``, 4-D weights in that layout) for the perturbed forwards that need no hooks.

        The same function up to float rounding; used only if ``torch.fx`` can trace the wrapped network, the
        model has BatchNorm layers, ``policy`` is true (or ``None``, the input on the CPU and at least
        ``FOLD_MIN_FORWARDS`` forwards planned) and the copy reproduces the unperturbed logits of ``x``. The
        copy is cached per detector until any parameter or buffer changes (see :func:`clear_folded`).
        """
        auto = planned >= FOLD_MIN_FORWARDS and x.device.type == "cpu"
        if not (policy if policy is not None else auto):
            return False
        net = folded_copy(self.detector, self.channels_last)
        if net is None:
            return False
        adapter = self.detector._adapter

        def folded(batch: Tensor) -> Any:
            return adapter(net(batch))

        with self.autocast(x.device):
            check = folded(self.prepare(x)).float()
        if not agrees(check, logits, self.tolerance):
            return False
        self.folded = folded
        return True

    def compile(self) -> bool:
        """Run full chunks of the fast forwards through ``torch.compile`` of the folded copy (or of the
        network when there is none); see the module docstring. Call after :meth:`fold`."""
        self.compiled = _compiled_net(self.detector, self.channels_last, self.folded is not None)
        return self.compiled is not None

    @property
    def tolerance(self) -> float:
        """Relative tolerance of a faster copy's check against the model: 5e-2 under autocast, else 1e-4."""
        return 5e-2 if self.amp else 1e-4

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager[Any]:
        if self.amp is None:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        return torch.autocast(device.type, dtype=dtype)

    def prepare(self, batch: Tensor) -> Tensor:
        if self.channels_last and batch.dim() == 4:
            return batch.contiguous(memory_format=torch.channels_last)
        return batch

    def logits(
        self,
        batch: Tensor,
        *,
        count: bool = True,
        layout: bool = True,
        fast: bool = False,
        rerun: bool = True,
    ) -> Tensor:
        """Logits of ``batch`` (under :meth:`autocast`; ``fast``: hook-free forwards on the folded, compiled
        or split model); ``rerun``: a non-finite output under autocast is computed again in full precision."""
        model: Callable[[Tensor], Any] = self.detector
        if fast and self.folded is not None:
            model = self.folded
        inp = self.prepare(batch) if layout else batch
        with self.autocast(batch.device), cudnn_benchmark(self.autotune and batch.is_cuda):
            if fast and self.compiled is not None and batch.shape[0] == self.batch_size:
                out = self._compiled_logits(self.compiled, inp, model)
            elif fast:
                out = self.split(model, inp)
            else:
                out = model(inp)
        if rerun and self.amp is not None and not bool(torch.isfinite(out).all()):
            # fp16 overflows above 65504: this chunk again in full precision, counted in meta
            with cudnn_benchmark(self.autotune and batch.is_cuda):
                out = self.split(model, inp) if fast else model(inp)
            self.amp_fallbacks += batch.shape[0]
        if count:
            self.forwards += batch.shape[0]
            self.tick()
        return out.float()

    def _compiled_logits(self, entry: _Compiled, inp: Tensor, eager: Callable[[Tensor], Any]) -> Tensor:
        """The compiled forward of a full chunk; its first run on a new shape is checked against ``eager``
        (on failure the compiled graph is dropped for this model and ``eager`` serves every chunk)."""
        key = (tuple(inp.shape), inp.dtype, inp.device, self.amp)
        try:
            out = self.detector._adapter(entry.net(inp))
        except Exception as exc:  # a graph or backend Inductor cannot compile: stay eager
            warnings.warn(f"torch.compile failed, running eagerly: {type(exc).__name__}: {exc}", stacklevel=2)
            return self._drop_compiled(entry, eager(inp))
        if key not in entry.checked:
            ref = eager(inp)
            if not agrees(out, ref, self.tolerance):
                return self._drop_compiled(entry, ref)
            entry.checked.add(key)
        self.compiled_forwards += inp.shape[0]
        return out

    def _drop_compiled(self, entry: _Compiled, out: Tensor) -> Tensor:
        entry.failed = True
        self.compiled = None
        return out

    def score(self, batch: Tensor, *, fast: bool = True) -> Tensor:
        """``(n, ...)`` inputs → ``(n,)`` float32 target scores (on the folded copy when there is one)."""
        if self.amp_candidate is not None and batch.shape[0] >= AMP_PROBE_INPUTS:
            return self._score_and_probe(batch, fast, self.amp_candidate)
        return self.target(self.logits(batch, fast=fast)).float()

    def _score_and_probe(self, batch: Tensor, fast: bool, amp: Amp) -> Tensor:
        """``amp="auto"``: the first chunk of at least :data:`AMP_PROBE_INPUTS` perturbed inputs runs in full
        precision, its first :data:`AMP_PROBE_INPUTS` inputs also under ``amp``; the later forwards take
        ``amp`` when those scores are finite and ``max |s_amp − s| ≤ AMP_PROBE_TOL · (max s − min s)`` over
        the chunk — an error of at most 1 % of the differences the method compares."""
        self.amp_candidate = None
        full = self.target(self.logits(batch, fast=fast)).float()
        self.amp = amp
        low = self.target(self.logits(batch[:AMP_PROBE_INPUTS], count=False, fast=fast, rerun=False)).float()
        spread = float(full.max() - full.min())
        error = float((low - full[:AMP_PROBE_INPUTS]).abs().max())  # nan if low is not finite
        passed = bool(torch.isfinite(low).all()) and error <= AMP_PROBE_TOL * spread
        self.amp = amp if passed else None
        self.probe = {"amp": amp, "passed": passed, "error": error, "spread": spread, "inputs": low.shape[0]}
        return full

    def tail_score(self, tail: Callable[[Tensor], Any], rows: Tensor) -> Tensor:
        """Target scores of the folded copy run from its first layer's output, ``tail(rows)`` per input row
        (see :class:`LinearStem`)."""
        self.forwards += rows.shape[0]
        out = self.target(self.detector._adapter(self.split(tail, rows)).float()).float()
        self.tick()
        return out

    def tick(self) -> None:
        """Tell the :func:`reporting` callback how many forwards ran (full and partial) of how many."""
        if self.report is not None and self.planned:  # not before the method knows its count
            done = self.forwards + self.partial_forwards
            self.report(self.label, done, max(done, self.planned))

    def plan_workers(self, x: Tensor, policy: int | None) -> None:
        """How many threads share each chunk of hook-free forwards (see :func:`split_forward`): ``policy``
        if given, else 2 on a CPU with at least 2 intra-op threads when the forwards run eagerly in full
        precision, each part holds at least :data:`MIN_WORKER_BATCH` inputs and no module of the model has a
        hook (hooks keep state; so may a model whose ``forward`` writes to itself: give it ``workers=1``);
        always 1 on CUDA, under autocast and for compiled chunks."""
        if x.device.type != "cpu" or self.amp is not None or self.compiled is not None:
            self.workers = 1
        elif policy is not None:
            self.workers = policy
        else:
            auto = _intraop_threads() >= 2 and self.batch_size >= 2 * MIN_WORKER_BATCH
            self.workers = 2 if auto and not has_hooks(self.detector) else 1

    def split(self, model: Callable[[Tensor], Any], batch: Tensor) -> Any:
        """``model(batch)``, over :attr:`workers` threads when there are several (:func:`split_forward`)."""
        if self.workers < 2 or batch.shape[0] < 2:
            return model(batch)
        return split_forward(model, batch, self.workers)

    def chunks(self, n: int, per_item: int = 1) -> Iterator[slice]:
        """Slices of ``range(n)`` holding at most ``batch_size // per_item`` items each."""
        step = max(1, self.batch_size // max(1, per_item))
        for start in range(0, n, step):
            yield slice(start, min(n, start + step))


Progress = Callable[[str, int, int], None]
"""A progress callback: ``(method, forwards done, forwards planned)``."""
_PROGRESS: contextvars.ContextVar[Progress | None] = contextvars.ContextVar("fakelens_progress", default=None)


@contextlib.contextmanager
def reporting(callback: Progress) -> Iterator[None]:
    """Within the block, every perturbation method calls ``callback(method, done, planned)`` after each
    chunk of forwards (``planned`` is refined once the method knows which channels it skips)."""
    token = _PROGRESS.set(callback)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def _intraop_threads() -> int:
    return torch.get_num_threads()


_POOL_LOCK = threading.Lock()


@functools.cache
def _pool(workers: int, each: int, pid: int) -> ThreadPoolExecutor:
    """``workers`` threads, each set once to ``each`` intra-op threads (a barrier puts one setup on each
    thread). ``torch.set_num_threads`` also sets the default of threads started later: the caller's
    setting is restored right after, while the pool's threads keep theirs. Keyed by process id too: a
    forked child has none of its parent's threads."""
    pool = ThreadPoolExecutor(workers, thread_name_prefix="fakelens-forward")
    barrier = threading.Barrier(workers)

    def setup(_: int) -> None:
        torch.get_num_threads()  # PyTorch's per-thread lazy init first, or it would undo the next line
        torch.set_num_threads(each)
        barrier.wait()

    threads = torch.get_num_threads()
    try:
        list(pool.map(setup, range(workers)))
    finally:
        torch.set_num_threads(threads)
    return pool


def split_forward(model: Callable[[Tensor], Tensor], batch: Tensor, workers: int) -> Tensor:
    """``model(batch)`` as ``workers`` independent forwards of consecutive parts of the batch, one per thread,
    each with ``threads // workers`` intra-op threads (at least 1), concatenated in order.

    On a CPU the operations of a small-batch forward scale poorly over intra-op threads; two halves side by
    side, one thread each, gave 8–15 % more forwards per second than one batch over 2 threads (ResNet-18,
    chunk 32, 2 Zen 4 cores; ``benchmarks/RESULTS.md``). Only for forwards that need no hooks and keep no
    per-call state; the parts see the caller's inference mode, no autocast.
    """
    each = max(1, torch.get_num_threads() // workers)
    inference = torch.is_inference_mode_enabled()

    def task(part: Tensor) -> Tensor:
        with torch.inference_mode(inference):
            return model(part)

    with _POOL_LOCK:
        pool = _pool(workers, each, os.getpid())
    return torch.cat(list(pool.map(task, batch.chunk(workers))))


@dataclass
class _Compiled:
    net: Callable[[Tensor], Any]
    checked: set[tuple[Any, ...]] = field(default_factory=set)
    failed: bool = False


_COMPILED: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[Any, ...], _Compiled]] = (
    weakref.WeakKeyDictionary()
)


def _compiled_net(detector: Detector, channels_last: bool, folded: bool) -> _Compiled | None:
    """``torch.compile`` (Inductor, weight freezing) of the folded copy or of ``detector.net``, cached per
    detector and state; ``None`` after a compiled graph once disagreed with the eager forward."""
    sig = (folded, *state_signature(detector, channels_last))
    hit = _COMPILED.get(detector)
    if hit is not None and hit[0] == sig:
        return None if hit[1].failed else hit[1]
    base = folded_copy(detector, channels_last) if folded else detector.net
    assert base is not None
    entry = _Compiled(torch.compile(base, dynamic=False, options={"freezing": True}))
    _COMPILED[detector] = (sig, entry)
    return entry


def clear_folded() -> None:
    """Drop every cached BatchNorm-folded copy and compiled graph (they hold a copy of the weights while
    their model lives)."""
    clear_folded_copies()
    _COMPILED.clear()


@contextlib.contextmanager
def cudnn_benchmark(on: bool) -> Iterator[None]:
    """Turn on cuDNN's autotuner for the block (the global flag is restored after; not thread-safe).
    Left alone where deterministic algorithms were asked for."""
    if not on or torch.backends.cudnn.deterministic or torch.are_deterministic_algorithms_enabled():
        yield
        return
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old


def auto_batch_size(
    device: torch.device, input_hw: tuple[int, int], bytes_per_sample: int | None = None
) -> int:
    """A chunk size for perturbed forwards.

    CUDA: ``0.3 · free / (3 · largest activation of one sample)`` clamped to [1, 512]; CPU (and CUDA
    without a measurement): 32 inputs at 224² scaled by the pixel count, clamped to [1, 512].
    """
    pixels = max(1, input_hw[0] * input_hw[1])
    cpu = max(1, min(MAX_CHUNK, round(CPU_CHUNK_AT_224 * 224 * 224 / pixels)))
    if device.type != "cuda" or not bytes_per_sample:
        return cpu
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(MAX_CHUNK, int(0.3 * free / (3 * bytes_per_sample))))


@contextlib.contextmanager
def recorded(
    detector: Detector, layers: Sequence[str], probe: bool = False
) -> Iterator[tuple[dict[str, Any], list[int]]]:
    """Record each layer's raw output (first element of a tuple) during the block.

    With ``probe``, also the largest per-sample output size in bytes of any module (``peak[0]``), used to
    size chunks on CUDA. Hooks are removed in ``finally``.
    """
    store: dict[str, Any] = {}
    peak = [0]
    handles: list[torch.utils.hooks.RemovableHandle] = []

    def make(name: str) -> Callable[[nn.Module, object, object], None]:
        def hook(module: nn.Module, args: object, output: object) -> None:
            t = output[0] if isinstance(output, (tuple, list)) else output
            if not isinstance(t, Tensor):
                raise TypeError(f"layer {name!r} returned {type(t).__name__}, not a tensor")
            store[name] = t.clone()  # later in-place operations must not change the record

        return hook

    def probe_hook(module: nn.Module, args: object, output: object) -> None:
        if isinstance(output, Tensor) and output.dim() > 0 and output.shape[0] > 0:
            peak[0] = max(peak[0], output.numel() * output.element_size() // output.shape[0])

    try:
        for n in layers:
            handles.append(detector.layer(n).register_forward_hook(make(n)))
        if probe:
            handles.extend(m.register_forward_hook(probe_hook) for m in detector.modules())
        yield store, peak
    finally:
        for h in handles:
            h.remove()


def checked_fill(fill: str) -> Fill:
    """``fill`` if it is one of the baselines, else a :class:`ConfigError` (at construction, not mid-run)."""
    if fill not in ("mean", "black", "blur"):
        raise ConfigError(f"unknown fill {fill!r}: use 'mean', 'black' or 'blur'")
    return fill  # type: ignore[return-value]


def checked_sigma(sigma: float, fill: Fill) -> float:
    """``blur_sigma`` as a float: finite and ≥ 0, and > 0 for ``fill="blur"`` (a zero-width blur had run
    every forward, then failed as non-finite values)."""
    sigma = float(sigma)
    if not math.isfinite(sigma) or sigma < 0 or (fill == "blur" and sigma == 0):
        raise ConfigError(f"blur_sigma={sigma}: the blur's standard deviation must be a finite number > 0")
    return sigma


def fill_values(x: Tensor, detector: Detector, fill: Fill, sigma: float) -> Tensor:
    """The baseline the masks blend towards, broadcastable to ``x``: ``(1, C, 1, 1)`` or ``(B, C, H, W)``."""
    if fill == "mean":
        return x.new_zeros(1, x.shape[1], 1, 1)
    if fill == "black":
        spec = detector.input_spec
        mean = torch.tensor(spec.mean, device=x.device, dtype=x.dtype)[: x.shape[1]]
        std = torch.tensor(spec.std, device=x.device, dtype=x.dtype)[: x.shape[1]]
        return (-mean / std).view(1, -1, 1, 1)
    if fill == "blur":
        return gaussian_blur(x, sigma)
    raise ConfigError(f"unknown fill {fill!r}: use 'mean', 'black' or 'blur'")


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` with reflect padding (radius ``ceil(3σ)``)."""
    radius = max(1, math.ceil(3 * sigma))
    radius = min(radius, x.shape[-2] - 1, x.shape[-1] - 1)
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[1]
    y = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


# ----------------------------------------------------------------------------------------- base class


class Perturbation:
    """Base class of the perturbation explainers: options shared by all, the call protocol of the engine.

    Subclasses implement :meth:`run` under ``inference_mode`` and eval mode; ``self.runner`` forwards.
    """

    name: ClassVar[str] = ""
    uses_layers: ClassVar[bool] = False

    def __init__(
        self,
        *,
        batch_size: int | None = None,
        amp: AmpPolicy | None = "auto",
        seed: int = 0,
        channels_last: bool = True,
        fold_bn: bool | None = None,
        autotune: bool | None = None,
        compile: bool = False,
        workers: int | None = None,
    ) -> None:
        _check_count("batch_size", batch_size)
        if amp not in (None, "auto", "bf16", "fp16"):
            raise ConfigError(f"amp must be None, 'auto', 'bf16' or 'fp16', got {amp!r}")
        self.batch_size = batch_size
        self.amp: AmpPolicy | None = amp
        self.seed = int(seed)
        self.channels_last = channels_last
        self.fold_bn = fold_bn
        self.autotune = autotune
        self.compile = bool(compile)
        _check_count("workers", workers)
        self.workers = workers

    def __call__(
        self, detector: Detector, x: Tensor, target: Target, layers: Sequence[str]
    ) -> tuple[Tensor, dict[str, Any]]:
        if self.uses_layers and not layers:
            raise ConfigError(f"{self.name} needs layers; the model names no CAM layers")
        if isinstance(target, TopClass):
            return self._per_top_class(detector, x, target, layers)
        (raw, meta), common = self.execute(
            detector, x, target, lambda runner: self.run(runner, detector, x, target, tuple(layers))
        )
        common["exact"] = common["exact"] and meta.get("exact", True)
        meta.update(common)
        return raw, meta

    def _per_top_class(
        self, detector: Detector, x: Tensor, target: TopClass, layers: Sequence[str]
    ) -> tuple[Tensor, dict[str, Any]]:
        """The top class is the *clean* image's: each perturbed copy is scored on it (as peers do), not on
        its own top class, which a mask or an ablation changes. Images with different top classes are
        explained group by group; their per-image meta is put back in batch order, counts are summed."""
        with frozen(detector), torch.inference_mode():
            classes = detector(x).argmax(1)
        groups = [(classes == k).nonzero()[:, 0] for k in classes.unique().tolist()]
        parts = [
            self(detector, x[i], ClassLogit(int(classes[i[0]]), name=target.name), layers) for i in groups
        ]
        raw = _in_batch_order([r for r, _ in parts], groups, x.shape[0])
        meta = dict(parts[0][1])
        for key in PER_IMAGE_META:
            if key in meta:
                meta[key] = _in_batch_order([m[key] for _, m in parts], groups, x.shape[0])
        for key in COUNT_META:
            if key in meta:
                meta[key] = sum(m[key] for _, m in parts)
        meta["exact"] = all(m.get("exact", True) for _, m in parts)
        meta["forwards"] += x.shape[0]  # the clean forward that found the classes
        meta["top_classes"] = classes.tolist()
        return raw, meta

    def execute(
        self, detector: Detector, x: Tensor, target: Target, body: Callable[[Runner], _R]
    ) -> tuple[_R, dict[str, Any]]:
        """``body(runner)`` under ``inference_mode`` and eval mode with a :class:`Runner` set to these
        options, and the meta every method reports: forwards, chunk, precision, folding, compilation,
        workers."""
        if self.amp == "fp16" and x.device.type != "cuda":
            raise ConfigError("amp='fp16' needs a CUDA device (use amp='bf16' or None on CPU)")
        auto = self.amp == "auto"
        fixed: Amp | None = None if self.amp == "auto" else self.amp
        runner = Runner(detector, target, fixed, self.channels_last)
        runner.label = self.name
        if auto and x.is_cuda:
            runner.amp_candidate = "fp16"
        with frozen(detector), torch.inference_mode():
            if self.channels_last and x.dim() == 4:
                runner.channels_last = accepts_channels_last(detector, x)
            result = body(runner)
        meta: dict[str, Any] = {
            "forwards": runner.forwards,
            "batch_size": runner.batch_size,
            "amp": runner.amp,
            "exact": runner.amp is None or auto,
            "fold_bn": runner.folded is not None,
            "autotune": runner.autotune,
            "compiled": runner.compiled_forwards > 0,
            "workers": runner.workers,
        }
        if runner.partial_forwards:
            meta["partial_forwards"] = runner.partial_forwards
        if runner.probe is not None:
            meta["amp_probe"] = runner.probe
        if runner.amp is not None:
            meta["amp_fallbacks"] = runner.amp_fallbacks
        return result, meta

    def chunk_size(self, x: Tensor, bytes_per_sample: int | None) -> int:
        if self.batch_size is not None:
            return self.batch_size
        return auto_batch_size(x.device, (int(x.shape[-2]), int(x.shape[-1])), bytes_per_sample)

    def baseline(
        self, runner: Runner, x: Tensor, layers: Sequence[str] = ()
    ) -> tuple[Tensor, Tensor, dict[str, Any]]:
        """The one unperturbed forward: scores ``(B,)``, fake probabilities ``(B,)``, raw layer outputs."""
        probe = self.batch_size is None and x.device.type == "cuda"
        with recorded(runner.detector, layers, probe) as (store, peak):
            logits = runner.logits(x)
        missing = [n for n in layers if n not in store]
        if missing:
            raise ValueError(f"layers {missing} of {runner.detector.name!r} did not run in the forward pass")
        runner.batch_size = self.chunk_size(x, peak[0] or None)
        runner.reference = logits
        return runner.target(logits).float(), runner.detector.fake_probability(logits).float(), store

    def maybe_fold(self, runner: Runner, x: Tensor, planned: int) -> None:
        """Before the perturbed forwards: fold BatchNorm (see :meth:`Runner.fold`) per ``fold_bn``, compile
        per ``compile``, split chunks over ``workers`` threads (:meth:`Runner.plan_workers`), and on CUDA
        turn on cuDNN's autotuner if ``autotune``."""
        runner.planned = runner.forwards + planned
        if runner.reference is not None:
            runner.fold(x, runner.reference, planned, self.fold_bn)
            if self.compile:
                runner.compile()
        runner.plan_workers(x, self.workers)
        runner.autotune = x.is_cuda and bool(self.autotune)

    def run(
        self, runner: Runner, detector: Detector, x: Tensor, target: Target, layers: tuple[str, ...]
    ) -> tuple[Tensor, dict[str, Any]]:
        raise NotImplementedError


PER_IMAGE_META = (
    "scores",
    "probabilities",
    "channels_used",
    "channels_constant",
    "channels_repeated",
    "channels_zero",
)
"""Meta entries with one value per image (per layer first, with several layers)."""
COUNT_META = ("forwards", "partial_forwards", "amp_fallbacks", "linear_stem_forwards")


def _in_batch_order(values: list[Any], groups: list[Tensor], batch: int) -> Any:
    """One per-image meta entry of each group of images (a tensor, a list, or a list per layer) put back
    in the order of the batch the groups were taken from."""
    if isinstance(values[0], Tensor):
        out = values[0].new_empty((batch, *values[0].shape[1:]))
        for v, i in zip(values, groups, strict=True):
            out[i] = v
        return out
    if values[0] and isinstance(values[0][0], list):  # one list per layer
        return [_in_batch_order(list(layer), groups, batch) for layer in zip(*values, strict=True)]
    order: list[Any] = [None] * batch
    for v, i in zip(values, groups, strict=True):
        for j, item in zip(i.tolist(), v, strict=True):
            order[j] = item
    return order


def _check_count(name: str, value: object) -> None:
    """A :class:`ConfigError` unless ``value`` is ``None`` or an integer >= 1 (checked at construction)."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ConfigError(f"{name} must be an integer >= 1 or None, got {value!r}")


def _top_k_mask(active: Tensor, mass: Tensor, top_k: int | None) -> Tensor:
    """Restrict ``active`` ``(B, C)`` to the ``top_k`` channels of largest ``mass`` per image."""
    if top_k is None or top_k >= active.shape[1]:
        return active
    if top_k < 1:
        raise ConfigError(f"top_k must be >= 1 or None, got {top_k}")
    idx = mass.masked_fill(~active, -math.inf).topk(top_k, dim=1).indices
    keep = torch.zeros_like(active).scatter_(1, idx, True)
    return active & keep


def _per_image(mask: Tensor) -> list[int]:
    return [int(v) for v in mask.sum(1).tolist()]


def _per_image_count(image_index: Tensor, batch: int) -> Tensor:
    return torch.bincount(image_index, minlength=batch).cpu()


def _distinct(pairs: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """ScoreCAM's (image, channel) ``pairs`` with equal mask coefficients ``alpha`` within an image share
    one forward: the representative pairs (first of each kind, in the given order), their ``alpha``, and
    for every pair the index of its representative. Equal coefficients are the same mask (up to float
    rounding), e.g. two channels hot in the same single cell; 4–6 % of the active channels of the shipped
    CNN's CAM layer on the demo photos."""
    n = pairs.shape[0]
    if n == 0:
        return pairs, alpha, torch.zeros(0, dtype=torch.long, device=pairs.device)
    keys = torch.cat([pairs[:, :1].to(alpha.dtype), alpha], 1)
    _, inverse = torch.unique(keys, dim=0, return_inverse=True)
    index = torch.arange(n, device=pairs.device)
    first = torch.full((int(inverse.max()) + 1,), n, device=pairs.device)
    first = first.scatter_reduce_(0, inverse, index, "amin")
    first, perm = first.sort()
    rank = torch.empty_like(perm)
    rank[perm] = torch.arange(len(perm), device=pairs.device)
    return pairs[first], alpha[first], rank[inverse]


# -------------------------------------------------------------------------------------------- ScoreCAM


LINEAR_STEM_MAX_BYTES = 512 * 2**20
"""Upper bound of the precomputed stem maps of one image (:class:`LinearStem`)."""

_STEMS: weakref.WeakKeyDictionary[nn.Module, tuple[nn.Conv2d, nn.Module] | None] = weakref.WeakKeyDictionary()


def _split_stem(net: nn.Module) -> tuple[nn.Conv2d, nn.Module] | None:
    """``(conv, tail)`` with ``net(x) = tail(conv(x))`` when the traced ``net``'s input feeds one plain
    ``Conv2d`` and nothing else (cached per net); ``None`` otherwise."""
    if net in _STEMS:
        return _STEMS[net]
    split: tuple[nn.Conv2d, nn.Module] | None = None
    if isinstance(net, torch.fx.GraphModule):
        inputs = [n for n in net.graph.nodes if n.op == "placeholder"]
        users = list(inputs[0].users) if len(inputs) == 1 else []
        stem = users[0] if len(users) == 1 else None
        if stem is not None and stem.op == "call_module" and stem.args == (inputs[0],) and not stem.kwargs:
            conv = net.get_submodule(str(stem.target))
            if type(conv) is nn.Conv2d and conv.padding_mode == "zeros":
                graph = torch.fx.Graph()
                env: dict[torch.fx.Node, torch.fx.Node] = {}
                for node in net.graph.nodes:
                    if node is stem:
                        env[node] = graph.placeholder("stem")
                    elif node.op != "placeholder":
                        env[node] = graph.node_copy(node, lambda n: env[n])
                split = (conv, torch.fx.GraphModule(net, graph))
    _STEMS[net] = split
    return split


class LinearStem:
    r"""ScoreCAM's masked inputs through the first layer in one matrix product (exact up to rounding).

    The mask of a channel is a bilinear upsampling of its ``h×w`` map, min-max normalised:
    ``M = Σ_j α_j B_j`` with ``B_j`` the bilinear basis of grid cell ``j`` (``Σ_j B_j = 1``, so the
    normalisation only changes the coefficients ``α``). When the network starts with a convolution ``W``
    (bias ``b``) of its input alone,

    .. math:: W * (x_b + M \odot d) + b = (W * x_b + b) + \sum_j \alpha_j\, W * (B_j \odot d)

    so the ``h·w`` maps ``C_j = W * (B_j ⊙ d)`` are computed once per image and a chunk of channels' stem
    outputs is one matrix product ``offset + α C``; only the rest of the network runs per channel. Built
    on the BatchNorm-folded copy, exact forwards only (no autocast); each image's maps are checked on the
    unmasked input (``α = 1``) against the unperturbed score, else the direct path is used. Measured on
    ResNet-18 (7×7 layer4, 2 CPU cores): per chunk of 32 the 3-channel stem cost 0.10 s, the product
    0.03–0.04 s; exact ScoreCAM 10.8 → 9.8 s (interleaved A/B, see ``benchmarks/RESULTS.md``).
    """

    def __init__(
        self,
        runner: Runner,
        split: tuple[nn.Conv2d, nn.Module],
        fill: Tensor,
        diff: Tensor,
        basis: Tensor,
        stem_size: tuple[int, int],
        reference: Tensor,
    ) -> None:
        self.runner, (self.conv, self.tail) = runner, split
        self.fill, self.diff, self.basis, self.stem_size = fill, diff, basis, stem_size
        self.reference = reference
        self.cache: tuple[int, tuple[Tensor, Tensor] | None] | None = None
        self.out: Tensor | None = None

    @classmethod
    def plan(
        cls,
        runner: Runner,
        x: Tensor,
        fill: Tensor,
        diff: Tensor,
        grid: tuple[int, int],
        align_corners: bool,
        channels: int,
        reference: Tensor,
    ) -> LinearStem | None:
        """The shortcut for one layer's ``grid``, or ``None`` where it does not apply or would not pay:
        no folded copy, autocast, a first layer that is not a convolution of the input alone, more grid
        cells than twice the stem's multiply-adds per output or than half the ``channels`` per image, or
        stem maps above :data:`LINEAR_STEM_MAX_BYTES`."""
        if runner.folded is None or runner.amp is not None or x.dim() != 4:
            return None
        net = folded_copy(runner.detector, runner.channels_last)
        split = _split_stem(net) if net is not None else None
        if split is None:
            return None
        conv = split[0]
        cells = grid[0] * grid[1]
        out = _conv(conv, x[:1], None)
        size = cells * out.numel() * out.element_size()
        if cells > 2 * conv.weight[0].numel() or 2 * cells > channels or size > LINEAR_STEM_MAX_BYTES:
            return None
        eye = torch.eye(cells, device=x.device, dtype=x.dtype).view(cells, 1, *grid)
        basis = F.interpolate(eye, size=x.shape[-2:], mode="bilinear", align_corners=align_corners)
        return cls(runner, split, fill, diff, basis, (out.shape[-2], out.shape[-1]), reference)

    def maps(self, b: int) -> tuple[Tensor, Tensor] | None:
        """Image ``b``'s ``(cells, Ho·Wo·Co)`` maps and ``(1, Ho·Wo·Co)`` offset (channels-last order),
        or ``None`` when they fail the check on the unmasked input (``α = 1``)."""
        if self.cache is not None and self.cache[0] == b:
            return self.cache[1]
        self.cache = None  # free the previous image's maps first

        def flat(t: Tensor, bias: Tensor | None) -> Tensor:
            return _conv(self.conv, self.runner.prepare(t), bias).permute(0, 2, 3, 1).flatten(1)

        d = self.diff[0 if self.diff.shape[0] == 1 else b]
        base = self.fill[0 if self.fill.shape[0] == 1 else b].expand(d.shape)
        maps, offset = flat(self.basis * d, None), flat(base[None], self.conv.bias)
        check, ref = self.tail_scores(offset + maps.sum(0, keepdim=True))[0], self.reference[b]
        entry = (maps, offset) if agrees(check, ref) else None
        self.cache = (b, entry)
        return entry

    def tail_scores(self, rows: Tensor) -> Tensor:
        """``(n, Ho·Wo·Co)`` stem outputs → ``(n,)`` scores of the rest of the network."""
        return self.runner.tail_score(self._tail, rows)

    def _tail(self, rows: Tensor) -> Tensor:
        return self.tail(rows.view(rows.shape[0], *self.stem_size, -1).permute(0, 3, 1, 2))

    def score(self, b_idx: Tensor, alpha: Tensor) -> Tensor | None:
        """Scores of the masked inputs with coefficients ``alpha`` ``(n, cells)`` of images ``b_idx``
        (sorted), or ``None`` when an image's maps failed their check. A chunk of one image is split over
        the runner's workers product and tail together (one worker's memory-bound product overlaps the
        other's convolutions); a chunk spanning images makes its products first."""
        images, counts = torch.unique_consecutive(b_idx, return_counts=True)
        n = alpha.shape[0]
        entries = []
        for b in images.tolist():
            entry = self.maps(int(b))
            if entry is None:
                return None
            entries.append(entry)
        if self.out is None or self.out.shape[0] < n:  # reused: a fresh block per chunk costs page faults
            self.out = alpha.new_empty((max(n, self.runner.batch_size), entries[0][0].shape[1]))
        out = self.out
        if len(entries) == 1:
            maps, offset = entries[0]

            def product_and_tail(rows: Tensor) -> Tensor:  # rows: consecutive positions in the chunk
                lo, hi = int(rows[0]), int(rows[-1]) + 1
                return self._tail(torch.addmm(offset, alpha[lo:hi].to(maps.dtype), maps, out=out[lo:hi]))

            return self.runner.tail_score(product_and_tail, torch.arange(n))
        start = 0
        for (maps, offset), part in zip(entries, alpha.split(counts.tolist()), strict=True):
            torch.addmm(offset, part.to(maps.dtype), maps, out=out[start : start + part.shape[0]])
            start += part.shape[0]
        return self.tail_scores(out[:n])


def _conv(conv: nn.Conv2d, x: Tensor, bias: Tensor | None) -> Tensor:
    return F.conv2d(x, conv.weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


@EXPLAINERS.register("scorecam")
class ScoreCAM(Perturbation):
    r"""Score-CAM (Wang et al., CVPRW 2020): each channel's upsampled, normalised map masks the input.

    .. math:: M_k = \frac{U(A^k) - \min U(A^k)}{\max U(A^k) - \min U(A^k) + \epsilon},\quad
              w_k = f(x_b + M_k \odot (x - x_b)) - f(x_b),\quad S = \sum_k w_k A^k

    ``U`` bilinear upsampling to the input size, ``f`` the explained score (fake log-odds by default), ``x_b``
    the baseline (``fill``; ``"mean"`` = the all-zero normalised input, as in the paper's code). Weights:
    ``"difference"`` is the paper's increase over the baseline (signed, keeps its scale);
    ``"softmax"`` is ``softmax_k f(x_k)`` as in pytorch-grad-cam and torchcam (equal to the softmax of the
    differences). ``align_corners=True`` and ``mask_norm="upsampled"`` reproduce pytorch-grad-cam;
    ``align_corners=False`` with ``mask_norm="feature"`` (normalise before upsampling) reproduce torchcam.

    Exact cost: one forward per non-constant channel per image (constant channels are skipped: their mask
    is 0, so ``f = f(x_b)``, ``w = 0``), and one per kind of channels with equal mask coefficients
    (``meta["channels_repeated"]`` counts the others); with ``linear_stem`` (default, eager forwards) the
    first convolution of all masked inputs is one matrix product (:class:`LinearStem`;
    ``meta["linear_stem_forwards"]`` counts the forwards that used it). Budget: ``top_k`` evaluates only
    the channels of largest ``Σ|A^k|``; the others get ``w = 0`` (left out of the softmax too); ``exact``
    is false unless ``top_k`` covers every channel.
    """

    name = "scorecam"
    uses_layers = True

    def __init__(
        self,
        *,
        top_k: int | None = None,
        weights: Literal["difference", "softmax"] = "difference",
        fill: Fill = "mean",
        blur_sigma: float = 5.0,
        align_corners: bool = False,
        mask_norm: Literal["upsampled", "feature"] = "upsampled",
        eps: float = 1e-8,
        linear_stem: bool = True,
        **options: Unpack[FastOptions],
    ) -> None:
        super().__init__(**options)
        self.linear_stem = linear_stem
        if weights not in ("difference", "softmax"):
            raise ConfigError(f"weights must be 'difference' or 'softmax', got {weights!r}")
        if mask_norm not in ("upsampled", "feature"):
            raise ConfigError(f"mask_norm must be 'upsampled' or 'feature', got {mask_norm!r}")
        _check_count("top_k", top_k)
        self.top_k = top_k
        self.weights = weights
        self.fill: Fill = checked_fill(fill)
        self.blur_sigma = checked_sigma(blur_sigma, self.fill)
        self.align_corners = align_corners
        self.mask_norm = mask_norm
        self.eps = eps

    def masks(self, maps: Tensor, size: tuple[int, int]) -> Tensor:
        """``(n, h, w)`` channel maps → ``(n, 1, H, W)`` masks in [0, 1]."""
        m = maps[:, None].float()
        if self.mask_norm == "feature":
            lo = m.amin(dim=(2, 3), keepdim=True)
            m = (m - lo) / (m.amax(dim=(2, 3), keepdim=True) - lo + self.eps)
        up = F.interpolate(m, size=size, mode="bilinear", align_corners=self.align_corners)
        if self.mask_norm == "upsampled":
            lo = up.amin(dim=(2, 3), keepdim=True)
            up = (up - lo) / (up.amax(dim=(2, 3), keepdim=True) - lo + self.eps)
        return up

    def coefficients(self, maps: Tensor, size: tuple[int, int]) -> Tensor:
        """``(n, h, w)`` channel maps → ``(n, h·w)`` coefficients ``α`` of their masks in the bilinear
        basis (:class:`LinearStem`): :meth:`masks` is ``Σ_j α_j B_j``."""
        a = maps.flatten(1).float()
        if self.mask_norm == "feature":
            lo, hi = a.amin(1, keepdim=True), a.amax(1, keepdim=True)
        else:
            up = F.interpolate(
                maps[:, None].float(), size=size, mode="bilinear", align_corners=self.align_corners
            )
            lo, hi = up.flatten(1).amin(1, keepdim=True), up.flatten(1).amax(1, keepdim=True)
        return (a - lo) / (hi - lo + self.eps)

    def run(
        self, runner: Runner, detector: Detector, x: Tensor, target: Target, layers: tuple[str, ...]
    ) -> tuple[Tensor, dict[str, Any]]:
        scores, probs, store = self.baseline(runner, x, layers)
        hw = (int(x.shape[-2]), int(x.shape[-1]))
        grids = {n: _as_map(store[n], detector, hw).float() for n in layers}  # (B, C, h, w) each
        planned = x.shape[0] * sum(g.shape[1] for g in grids.values())
        if self.top_k is not None:
            planned = x.shape[0] * len(layers) * self.top_k
        self.maybe_fold(runner, x, planned)
        fill = fill_values(x, detector, self.fill, self.blur_sigma)
        if fill.shape[0] == 1:
            fill_score = runner.score(fill.expand(1, *x.shape[1:])).expand(x.shape[0])
        else:
            fill_score = runner.score(fill)
        diff = x - fill
        buf = torch.empty((runner.batch_size, *x.shape[1:]), device=x.device, dtype=x.dtype)
        if runner.channels_last and x.dim() == 4:
            buf = buf.contiguous(memory_format=torch.channels_last)
        raws: list[Tensor] = []
        used: list[list[int]] = []
        constant: list[list[int]] = []
        repeated: list[list[int]] = []
        totals: list[int] = []
        stem_forwards = 0
        for name in layers:
            acts = grids[name]
            flat = acts.flatten(2)
            varying = (flat.amax(-1) - flat.amin(-1)) > 0
            constant.append([acts.shape[1] - v for v in _per_image(varying)])
            active = _top_k_mask(varying, flat.abs().sum(-1), self.top_k)
            used.append(_per_image(active))
            totals.append(int(acts.shape[1]))
            ch_scores = fill_score[:, None].repeat(1, acts.shape[1])
            every = active.nonzero()  # (P, 2): image, channel — the one host sync
            alpha = torch.cat(
                [self.coefficients(acts[every[sl, 0], every[sl, 1]], hw) for sl in runner.chunks(len(every))]
                or [acts.new_zeros((0, acts.shape[-2] * acts.shape[-1]))]
            )
            pairs, alpha, rep_of = _distinct(every, alpha)
            later = layers[layers.index(name) + 1 :]
            runner.planned = runner.forwards + len(pairs) + x.shape[0] * sum(grids[n].shape[1] for n in later)
            distinct = _per_image_count(pairs[:, 0], x.shape[0])
            repeated.append((_per_image_count(every[:, 0], x.shape[0]) - distinct).tolist())
            rep_scores = alpha.new_empty(len(pairs))
            stem = None
            if self.linear_stem and runner.compiled is None:  # a compiled forward fuses the stem itself
                grid = (int(acts.shape[-2]), int(acts.shape[-1]))
                most = int(distinct.max()) if len(distinct) else 0
                stem = LinearStem.plan(runner, x, fill, diff, grid, self.align_corners, most, scores)
            for sl in runner.chunks(pairs.shape[0]):
                b_idx, k_idx = pairs[sl, 0], pairs[sl, 1]
                if stem is not None:
                    fast = stem.score(b_idx, alpha[sl])
                    if fast is not None:
                        rep_scores[sl] = fast
                        stem_forwards += b_idx.shape[0]
                        continue
                m = self.masks(acts[b_idx, k_idx], hw).to(x.dtype)
                n = m.shape[0]
                rows = diff if diff.shape[0] == 1 else diff.index_select(0, b_idx)
                base = fill if fill.shape[0] == 1 else fill.index_select(0, b_idx)
                inp = (
                    torch.addcmul(base, m, rows, out=buf[:n])
                    if self.fill != "mean"
                    else torch.mul(m, rows, out=buf[:n])
                )
                rep_scores[sl] = runner.score(inp)
            ch_scores[every[:, 0], every[:, 1]] = rep_scores[rep_of]
            if self.weights == "softmax":  # channels top_k left out get no share of the softmax
                w = torch.softmax(ch_scores.masked_fill(varying & ~active, float("-inf")), dim=1)
            else:
                w = ch_scores - fill_score[:, None]
            raws.append(torch.einsum("bc,bchw->bhw", w, acts))
        meta: dict[str, Any] = {
            "scores": scores,
            "probabilities": probs,
            "layers": list(layers),
            "channels_total": totals[0] if len(totals) == 1 else totals,
            "channels_used": used[0] if len(used) == 1 else used,
            "channels_constant": constant[0] if len(constant) == 1 else constant,
            "channels_repeated": repeated[0] if len(repeated) == 1 else repeated,
            "weights": self.weights,
            "fill": self.fill,
            "exact": self.top_k is None or self.top_k >= max(grids[n].shape[1] for n in layers),
            "linear_stem_forwards": stem_forwards,
        }
        return fuse_layers(raws), meta


# ----------------------------------------------------------------------------------------- AblationCAM


def _rows(obj: Any, b: int, n: int, batch: int, copy: bool) -> Any:
    """Image ``b`` of every batched tensor in ``obj``, ``n`` times: an expanded view, or fresh copies."""
    if isinstance(obj, Tensor):
        if obj.dim() == 0 or obj.shape[0] != batch:
            return obj
        view = obj[b : b + 1].expand(n, *obj.shape[1:])
        return view.clone() if copy else view
    if isinstance(obj, tuple):
        return tuple(_rows(o, b, n, batch, copy) for o in obj)
    if isinstance(obj, list):
        return [_rows(o, b, n, batch, copy) for o in obj]
    if isinstance(obj, dict):
        return {k: _rows(v, b, n, batch, copy) for k, v in obj.items()}
    return obj


_SKIP = object()
"""Marks a recorded output that cannot be replayed (it holds something other than tensors)."""


def _clone(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.clone()
    if isinstance(obj, tuple):
        return tuple(_clone(o) for o in obj)
    if isinstance(obj, list):
        return [_clone(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    return obj


def _cacheable(obj: Any) -> bool:
    if isinstance(obj, Tensor):
        return True
    if isinstance(obj, (tuple, list)):
        return all(_cacheable(o) for o in obj)
    if isinstance(obj, dict):
        return all(_cacheable(v) for v in obj.values())
    return False


@dataclass
class _Trace:
    """What the unperturbed pass of AblationCAM records: the layer's output, call counts, and the outputs
    of the outermost module calls that finished before the layer started (the pre-layer part)."""

    layer: nn.Module
    output: Any = None
    calls: dict[nn.Module, int] = field(default_factory=dict)
    before: list[tuple[nn.Module, Any]] = field(default_factory=list)
    entered: bool = False

    def reusable(self) -> dict[nn.Module, Any]:
        """Recorded pre-layer outputs safe to hand out again: the module ran once and its output holds
        only tensors (recorded as copies, so later in-place operations did not change them)."""
        return {
            m: o
            for m, o in self.before
            if self.calls.get(m, 0) == 1 and m is not self.layer and o is not _SKIP
        }


@contextlib.contextmanager
def _traced(detector: Detector, layer: nn.Module) -> Iterator[_Trace]:
    """Hooks on every module: at each call's end the records of calls nested in it are dropped, so when the
    layer starts, the remaining records are the outermost finished calls (siblings of the layer's
    ancestors). Each record is a copy taken when the call ends, so an in-place operation later in the
    forward (``relu(inplace=True)`` after a BatchNorm, say) cannot change it. Hooks are removed in
    ``finally``."""
    trace = _Trace(layer)
    records: list[tuple[nn.Module, Any]] = []
    stack: list[int] = []
    handles: list[torch.utils.hooks.RemovableHandle] = []

    def pre(module: nn.Module, args: object) -> None:
        if module is layer and not trace.entered:
            trace.entered = True
            trace.before = list(records)
        if not trace.entered:
            stack.append(len(records))

    def post(module: nn.Module, args: object, output: object) -> None:
        trace.calls[module] = trace.calls.get(module, 0) + 1
        if module is layer:
            trace.output = _clone(output)
        if trace.entered:
            return
        start = stack.pop()
        del records[start:]
        records.append((module, _clone(output) if _cacheable(output) else _SKIP))

    try:
        for m in detector.modules():
            handles.append(m.register_forward_pre_hook(pre))
            handles.append(m.register_forward_hook(post))
        yield trace
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def _patched(replacements: dict[nn.Module, Callable[..., Any]]) -> Iterator[None]:
    """Replace ``module.forward`` for the block; the original (class or instance) forward is restored."""
    saved: list[tuple[nn.Module, Any]] = []
    try:
        for m, fn in replacements.items():
            saved.append((m, m.__dict__.get("forward")))
            m.forward = fn
        yield
    finally:
        for m, old in saved:
            if old is None:
                m.__dict__.pop("forward", None)
            else:
                m.forward = old


@EXPLAINERS.register("ablationcam")
class AblationCAM(Perturbation):
    r"""Ablation-CAM (Desai & Ramaswamy, WACV 2020): the relative score drop when channel k is zeroed.

    .. math:: w_k = \frac{y - y_{A^k=0}}{|y|},\qquad S = \sum_k w_k A^k

    (paper and pytorch-grad-cam divide by ``y``; with a signed target such as the fake log-odds, dividing
    by a negative ``y`` would flip every weight, so we divide by ``|y|`` — identical when ``y > 0``;
    ``relative=False`` gives the plain drop ``y − y_{A^k=0}``; ``meta["relative_to_score"]`` tells
    :func:`fakelens.tiling.stitch` to divide a tiled image's maps by the image's ``|ȳ|``, not each tile's
    own). For token layers only *patch* tokens are
    ablated; class and register tokens keep their values (pytorch-grad-cam zeroes the channel in every token
    and, for layers whose output is not ≥ 0, writes ``min − 1e7`` instead of 0; we always write 0 as the
    paper does).

    Speed: the layer runs once (in the unperturbed pass); the ablated copies are fed to the rest of the
    network by temporarily replacing the layer's ``forward`` with one returning the pre-built chunk, and the
    ``forward`` of every outermost module that finished before the layer (e.g. ``conv1 … layer3`` of a
    ResNet, ``patch_embed … blocks.0`` of a ViT) with one returning its recorded output for the image — an
    expanded view, no copy (``meta["shortcut_mode"] = "views"``). Only glue code in the parents and the part
    after the layer run per copy (``meta["partial_forwards"]``). Modules that ran more than once or returned
    non-tensors are not replaced; the records are copies taken as each call ends. The shortcut is checked
    first (two unablated copies must reproduce the unperturbed score); if the check fails or raises (e.g. an
    in-place operation on a shared view), fresh copies are tried (``"copies"``), then every copy runs the
    whole network with a hook swapping in the layer output (``"full"``, ``meta["shortcut"] = False``).
    Chunks hold channels of one image. Channels already all zero are skipped (exact). The layer must run once
    per forward. Budget: ``top_k`` channels of largest ``Σ|A^k|`` per image (others ``w = 0``).
    """

    name = "ablationcam"
    uses_layers = True
    # its partial forwards run patched modules: no folded copy, compiled graph or split chunks
    ignored_options: ClassVar[tuple[str, ...]] = ("fold_bn", "autotune", "compile", "workers")

    def __init__(
        self,
        *,
        top_k: int | None = None,
        relative: bool = True,
        shortcut: bool = True,
        **options: Unpack[RunOptions],
    ) -> None:
        super().__init__(**options)
        _check_count("top_k", top_k)
        self.top_k = top_k
        self.relative = relative
        self.shortcut = shortcut

    def run(
        self, runner: Runner, detector: Detector, x: Tensor, target: Target, layers: tuple[str, ...]
    ) -> tuple[Tensor, dict[str, Any]]:
        hw = (int(x.shape[-2]), int(x.shape[-1]))
        raws: list[Tensor] = []
        used: list[list[int]] = []
        zero: list[list[int]] = []
        modes: list[str] = []
        scores = probs = x.new_empty(0)
        totals: list[int] = []
        widest = 0
        for name in layers:
            layer = detector.layer(name)
            probe = self.batch_size is None and x.device.type == "cuda"
            with _traced(detector, layer) as trace, recorded(detector, (), probe) as (_, peak):
                logits = runner.logits(x)
            if trace.output is None:
                raise ValueError(f"layer {name!r} of {detector.name!r} did not run in the forward pass")
            if trace.calls.get(layer, 0) != 1:
                raise ValueError(
                    f"AblationCAM needs a layer that runs once per forward; {name!r} ran "
                    f"{trace.calls.get(layer, 0)} times"
                )
            runner.batch_size = self.chunk_size(x, peak[0] or None)
            scores = runner.target(logits).float()
            probs = detector.fake_probability(logits).float()
            out = trace.output[0] if isinstance(trace.output, (tuple, list)) else trace.output
            if not isinstance(out, Tensor):
                raise TypeError(f"layer {name!r} returned {type(out).__name__}, not a tensor")
            grid = _as_map(out, detector, hw).float()  # (B, C, h, w)
            tokens = out.dim() == 3
            last = out.dim() == 4 and grid.shape[1] != out.shape[1]  # a channels-last layer (B, h, w, C)
            prefix = detector.token_layout.num_prefix_tokens if tokens and detector.token_layout else 0
            active = grid.flatten(2).abs().amax(-1) > 0
            zero.append([grid.shape[1] - v for v in _per_image(active)])
            active = _top_k_mask(active, grid.flatten(2).abs().sum(-1), self.top_k)
            used.append(_per_image(active))
            totals.append(int(grid.shape[1]))
            widest = max(widest, totals[-1])
            runner.planned = runner.forwards + runner.partial_forwards + int(active.sum())

            def ablated(
                b: int,
                k_idx: Tensor,
                out: Tensor = out,
                tokens: bool = tokens,
                prefix: int = prefix,
                last: bool = last,
            ) -> Tensor:
                """``len(k_idx)`` copies of image ``b``'s layer output, copy i with channel ``k_idx[i]``
                zeroed (for tokens: in the patch tokens only; channels last: the last axis)."""
                a = out[b : b + 1].expand(k_idx.shape[0], *out.shape[1:]).clone()
                rows = torch.arange(a.shape[0], device=a.device)
                if tokens:
                    cols = torch.arange(prefix, a.shape[1], device=a.device)
                    a[rows[:, None], cols[None, :], k_idx[:, None]] = 0
                elif last:
                    a[rows, ..., k_idx] = 0
                else:
                    a[rows, k_idx] = 0
                return a

            forward = self._forward_fn(runner, detector, x, layer, trace, scores, out)
            modes.append(forward.mode)
            ch_scores = scores[:, None].repeat(1, grid.shape[1])
            for b in range(x.shape[0]):  # chunks never mix images: the pre-layer part is shared as a view
                channels = active[b].nonzero()[:, 0]
                for sl in runner.chunks(channels.shape[0]):
                    k_idx = channels[sl]
                    ch_scores[b, k_idx] = forward(b, ablated(b, k_idx))
            drop = scores[:, None] - ch_scores
            w = drop / scores.abs().clamp_min(1e-12)[:, None] if self.relative else drop
            raws.append(torch.einsum("bc,bchw->bhw", w, grid))
        meta: dict[str, Any] = {
            "scores": scores,
            "probabilities": probs,
            "layers": list(layers),
            "channels_total": totals[0] if len(totals) == 1 else totals,
            "channels_used": used[0] if len(used) == 1 else used,
            "channels_zero": zero[0] if len(zero) == 1 else zero,
            "shortcut": modes[0] != "full" if len(modes) == 1 else [m != "full" for m in modes],
            "shortcut_mode": modes[0] if len(modes) == 1 else modes,
            "exact": self.top_k is None or self.top_k >= widest,
            # several layers: fuse_layers rescales each map by its own peak, which already undoes 1/|y|
            "relative_to_score": self.relative and len(layers) == 1,
        }
        return fuse_layers(raws), meta

    def _forward_fn(
        self,
        runner: Runner,
        detector: Detector,
        x: Tensor,
        layer: nn.Module,
        trace: _Trace,
        scores: Tensor,
        out: Tensor,
    ) -> _AblatedForward:
        """The cheapest way to run the network with a replaced layer output that reproduces the
        unperturbed score of image 0 from two copies: pre-layer outputs as shared views, as copies, or the
        full network."""
        modes = ["views", "copies"] if self.shortcut and trace.reusable() else []
        tol = (5e-2 if runner.amp else 1e-3) * (1 + scores[0].abs())
        for mode in modes:
            fwd = _AblatedForward(runner, detector, x, layer, trace, mode)
            try:
                check = fwd(0, out[:1].expand(2, *out.shape[1:]).clone(), count=False)
            except RuntimeError:  # e.g. an in-place operation on a shared view
                continue
            if bool(((check - scores[0]).abs() <= tol).all()):
                return fwd
        return _AblatedForward(runner, detector, x, layer, trace, "full")


class _AblatedForward:
    """Scores of the network for image ``b`` when the layer outputs ``replacement`` ``(n, ...)``.

    ``mode``: ``"views"`` — every reusable pre-layer module returns its recorded output for image b as an
    expanded view and the layer returns ``replacement``: only glue code and the part after the layer run;
    ``"copies"`` — the same with fresh copies (for models that modify those outputs in place); ``"full"`` —
    the whole network runs on n copies of the image and a hook swaps in ``replacement``.
    """

    def __init__(
        self, runner: Runner, detector: Detector, x: Tensor, layer: nn.Module, trace: _Trace, mode: str
    ) -> None:
        self.runner, self.detector, self.x, self.layer, self.trace = runner, detector, x, layer, trace
        self.mode = mode
        self.replacements: dict[nn.Module, Any] = trace.reusable() if mode != "full" else {}

    def __call__(self, b: int, replacement: Tensor, *, count: bool = True) -> Tensor:
        batch = self.x.shape[0]
        n = replacement.shape[0]
        copy = self.mode != "views"
        layer_out = self.trace.output

        def as_output(rep: Tensor) -> Any:
            if isinstance(layer_out, tuple):
                return (rep, *_rows(layer_out[1:], b, n, batch, True))
            if isinstance(layer_out, list):
                return [rep, *_rows(layer_out[1:], b, n, batch, True)]
            return rep

        inp = self.x[b : b + 1].expand(n, *self.x.shape[1:])
        if self.mode != "full":
            fns: dict[nn.Module, Callable[..., Any]] = {
                m: (lambda *a, _o=o, **k: _rows(_o, b, n, batch, copy)) for m, o in self.replacements.items()
            }
            fns[self.layer] = lambda *a, **k: as_output(replacement)
            with _patched(fns):
                s = self.runner.target(
                    self.runner.logits(inp if not copy else inp.clone(), count=False, layout=False)
                ).float()
            if count:
                self.runner.partial_forwards += n
                self.runner.tick()
            return s

        def hook(module: nn.Module, args: object, output: object) -> Any:
            return as_output(replacement)

        handle = self.layer.register_forward_hook(hook)
        try:
            logits = self.runner.logits(inp.clone(), count=count, fast=False)
        finally:
            handle.remove()
        return self.runner.target(logits).float()


# ------------------------------------------------------------------------------------------- occlusion


def _pair(v: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """An int or an ``(h, w)`` pair (a tuple, or a list as JSON and Python callers give it)."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ConfigError(f"expected one size or an (h, w) pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Start offsets ``0, s, 2s, …`` plus a last window flush with the far edge, so every pixel is covered."""
    window = min(window, size)
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


@EXPLAINERS.register("occlusion")
class Occlusion(Perturbation):
    r"""Occlusion (Zeiler & Fergus, ECCV 2014): slide a window filled with a baseline over the image.

    .. math:: S(p) = \frac{1}{|\{W \ni p\}|} \sum_{W \ni p} \big(f(x) - f(x_{W \leftarrow b})\big)

    Every pixel a window covers gets that window's whole score drop, averaged over the windows that cover it
    (as captum's ``Occlusion``); the map has the input's resolution. ``fill``: black pixels
    (default), the normalisation mean, or a Gaussian blur. ``window`` defaults to 1/7 of the shorter side,
    ``stride`` (the budget) to half the window; a last window flush with each far edge covers every pixel.
    """

    name = "occlusion"

    def __init__(
        self,
        *,
        window: int | tuple[int, int] | None = None,
        stride: int | tuple[int, int] | None = None,
        fill: Fill = "black",
        blur_sigma: float = 5.0,
        **options: Unpack[FastOptions],
    ) -> None:
        super().__init__(**options)
        self.window = window
        self.stride = stride
        self.fill: Fill = checked_fill(fill)
        self.blur_sigma = checked_sigma(blur_sigma, self.fill)
        if window is not None:  # a window given (with or without its stride) is checked before any forward
            self.geometry((1, 1))

    def geometry(self, hw: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
        """``(window, stride)`` as ``(h, w)`` pairs for an input of size ``hw``."""
        if self.window is None:
            side = max(1, round(min(hw) / 7))
            win = (min(side, hw[0]), min(side, hw[1]))
        else:
            win = _pair(self.window)
        stride = (max(1, win[0] // 2), max(1, win[1] // 2)) if self.stride is None else _pair(self.stride)
        if min(*win, *stride) < 1:
            raise ConfigError(f"window {win} and stride {stride} must be >= 1")
        if stride[0] > win[0] or stride[1] > win[1]:
            raise ConfigError(
                f"stride {stride} is larger than the window {win}: pixels between windows would be covered "
                "by none and read 0 (give a stride no larger than the window)"
            )
        return win, stride

    def run(
        self, runner: Runner, detector: Detector, x: Tensor, target: Target, layers: tuple[str, ...]
    ) -> tuple[Tensor, dict[str, Any]]:
        b, _, h, w = x.shape
        win, stride = self.geometry((h, w))  # before any forward: a bad stride costs none
        scores, probs, _ = self.baseline(runner, x)
        ys = torch.tensor(window_starts(h, win[0], stride[0]), device=x.device)
        xs = torch.tensor(window_starts(w, win[1], stride[1]), device=x.device)
        tops = ys.repeat_interleave(len(xs))
        lefts = xs.repeat(len(ys))
        n_win = tops.shape[0]
        self.maybe_fold(runner, x, b * n_win)
        ar_h = torch.arange(h, device=x.device)
        ar_w = torch.arange(w, device=x.device)

        def rects(idx: Tensor) -> Tensor:
            t, left = tops[idx, None], lefts[idx, None]
            rows = (ar_h[None] >= t) & (ar_h[None] < t + min(win[0], h))
            cols = (ar_w[None] >= left) & (ar_w[None] < left + min(win[1], w))
            return rows[:, :, None] & cols[:, None, :]  # (n, H, W)

        fill = fill_values(x, detector, self.fill, self.blur_sigma).expand_as(x)
        acc = x.new_zeros(b, h, w, dtype=torch.float32)
        count = x.new_zeros(h, w, dtype=torch.float32)
        for sl in runner.chunks(n_win):
            count += rects(torch.arange(sl.start, sl.stop, device=x.device)).sum(0)
        tasks = n_win * b
        for sl in runner.chunks(tasks):
            t = torch.arange(sl.start, sl.stop, device=x.device)
            b_idx, w_idx = t // n_win, t % n_win
            r = rects(w_idx)
            inp = torch.where(r[:, None], fill.index_select(0, b_idx), x.index_select(0, b_idx))
            drop = scores.index_select(0, b_idx) - runner.score(inp)
            acc.index_add_(0, b_idx, drop[:, None, None] * r)
        meta: dict[str, Any] = {
            "scores": scores,
            "probabilities": probs,
            "layers": [],
            "windows": n_win,
            "window": list(win),
            "stride": list(stride),
            "fill": self.fill,
        }
        return acc / count.clamp_min(1), meta


# ------------------------------------------------------------------------------------------------ RISE


@EXPLAINERS.register("rise")
class RISE(Perturbation):
    r"""RISE (Petsiuk et al., BMVC 2018): randomly masked inputs, saliency = score-weighted mean mask.

    .. math:: S = \frac{1}{N p} \sum_{i=1}^{N} f(x_b + M_i \odot (x - x_b))\, M_i

    Each ``M_i``: an ``s × s`` grid of Bernoulli(p) cells, upsampled bilinearly to ``(s+1)·cell`` and cropped
    to the input at a random shift in ``[0, cell)`` (``cell = ⌈H/s⌉ × ⌈W/s⌉``). All masks are drawn up front
    from a local generator seeded with ``seed`` on the input's device, so chunking and batch composition do
    not change them, and every image of a batch sees the same masks. ``center=True`` (the default) subtracts
    the mean masked score first, ``f − mean f``: the paper's ``f`` is a probability (≥ 0), fakelens's default
    target a signed log-odds, and the uncentred sum is then the constant score times the mean mask plus a
    small varying part — blank (all negative) for every image scored real, near-uniform for the others.
    ``center=False`` is the paper's formula (for a non-negative target). Budget: ``n_masks``.
    """

    name = "rise"

    def __init__(
        self,
        *,
        n_masks: int = 1000,
        grid: int = 7,
        p: float = 0.5,
        fill: Fill = "mean",
        blur_sigma: float = 5.0,
        center: bool = True,
        **options: Unpack[FastOptions],
    ) -> None:
        super().__init__(**options)
        if n_masks < 1 or grid < 1 or not 0 < p <= 1:
            raise ConfigError(f"need n_masks >= 1, grid >= 1 and 0 < p <= 1 (got {n_masks}, {grid}, {p})")
        self.n_masks = n_masks
        self.grid = grid
        self.p = p
        self.fill: Fill = checked_fill(fill)
        self.blur_sigma = checked_sigma(blur_sigma, self.fill)
        self.center = center

    def draw(self, hw: tuple[int, int], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """The random draws: cell grids ``(N, 1, s, s)`` and shifts ``(N,)``, ``(N,)``."""
        g = torch.Generator(device=device).manual_seed(self.seed)
        s = self.grid
        cells = (torch.rand(self.n_masks, 1, s, s, generator=g, device=device) < self.p).float()
        ch, cw = math.ceil(hw[0] / s), math.ceil(hw[1] / s)
        dy = torch.randint(0, ch, (self.n_masks,), generator=g, device=device)
        dx = torch.randint(0, cw, (self.n_masks,), generator=g, device=device)
        return cells, dy, dx

    def masks(self, cells: Tensor, dy: Tensor, dx: Tensor, hw: tuple[int, int]) -> Tensor:
        """Upsample and crop drawn cells to ``(n, H, W)`` masks."""
        s = self.grid
        ch, cw = math.ceil(hw[0] / s), math.ceil(hw[1] / s)
        up = F.interpolate(cells, size=((s + 1) * ch, (s + 1) * cw), mode="bilinear", align_corners=False)
        n = cells.shape[0]
        rows = (dy[:, None] + torch.arange(hw[0], device=cells.device)[None])[:, :, None]
        cols = (dx[:, None] + torch.arange(hw[1], device=cells.device)[None])[:, None, :]
        return up[torch.arange(n, device=cells.device)[:, None, None], 0, rows, cols]

    def run(
        self, runner: Runner, detector: Detector, x: Tensor, target: Target, layers: tuple[str, ...]
    ) -> tuple[Tensor, dict[str, Any]]:
        scores, probs, _ = self.baseline(runner, x)
        b = x.shape[0]
        hw = (int(x.shape[-2]), int(x.shape[-1]))
        cells, dy, dx = self.draw(hw, x.device)
        self.maybe_fold(runner, x, b * self.n_masks)
        fill = fill_values(x, detector, self.fill, self.blur_sigma)
        diff = x - fill
        masked_scores = x.new_zeros(b, self.n_masks, dtype=torch.float32)
        for sl in runner.chunks(self.n_masks, per_item=b):
            m = self.masks(cells[sl], dy[sl], dx[sl], hw).to(x.dtype)  # (n, H, W)
            n = m.shape[0]
            inp = fill[:, None] + m[None, :, None] * diff[:, None]  # (B, n, C, H, W)
            masked_scores[:, sl] = runner.score(inp.flatten(0, 1)).view(b, n)
        weights = masked_scores - masked_scores.mean(1, keepdim=True) if self.center else masked_scores
        sal = x.new_zeros(b, *hw, dtype=torch.float32)
        for sl in runner.chunks(self.n_masks):
            m = self.masks(cells[sl], dy[sl], dx[sl], hw)
            sal += torch.einsum("bn,nhw->bhw", weights[:, sl], m)
        meta: dict[str, Any] = {
            "scores": scores,
            "probabilities": probs,
            "layers": [],
            "masks": self.n_masks,
            "grid": self.grid,
            "p": self.p,
            "seed": self.seed,
            "fill": self.fill,
            "center": self.center,
        }
        return sal / (self.n_masks * self.p), meta


__all__ = [
    "RISE",
    "AblationCAM",
    "Occlusion",
    "Perturbation",
    "Runner",
    "ScoreCAM",
    "auto_batch_size",
    "clear_folded",
    "fill_values",
    "gaussian_blur",
    "window_starts",
]
