r"""Gradient and activation CAMs computed from one :class:`~fakelens.explain.capture.Capture`.

Every method maps a layer's activations ``A`` ``(B, C, h, w)`` and the gradients ``g = ∂y/∂A`` of the
explained score ``y`` to a *signed* raw map ``(B, h, w)``; the heatmap shown to people is its ReLU. A new
method is one small class: subclass :class:`GradientCAM` and override ``weights`` (channel weights ``w_k``,
map ``Σ_k w_k A^k``), or subclass :class:`CAMMethod` and override ``combine`` (anything else); register it
with ``@register_cam("name")`` (set ``uses_gradients = False`` when it reads activations only)::

    @register_cam("absgradcam")
    class AbsGradCAM(GradientCAM):
        def weights(self, acts: Tensor, grads: Tensor) -> Tensor:
            return grads.abs().mean(dim=(2, 3))
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import ClassVar, TypeVar

import torch
from torch import Tensor

from fakelens.registry import Registry


class CAMMethod:
    """Base class: ``combine(acts, grads) -> (B, h, w)`` signed raw map (for ``Σ_k w_k A^k`` maps, subclass
    :class:`GradientCAM` and give ``weights`` instead)."""

    name: ClassVar[str] = ""
    uses_gradients: ClassVar[bool] = True
    class_agnostic: ClassVar[bool] = False
    """True when the map ignores the explained target (e.g. a principal component of the activations): it
    shows where the model is active, not evidence for fake."""
    eps: float = 1e-7

    def combine(self, acts: Tensor, grads: Tensor) -> Tensor:
        raise NotImplementedError(
            f"{type(self).__name__} overrides neither combine() nor, as a GradientCAM, weights()"
        )

    def combine_within(self, acts: Tensor, grads: Tensor, cells: Tensor) -> Tensor:
        """``combine`` when the feature ``cells`` ``(B, h, w)`` that show the image are known (a letterboxed,
        padded or rotated input); methods whose cells depend on the others' statistics override it."""
        return self.combine(acts, grads)

    def __call__(self, acts: Tensor, grads: Tensor | None, cells: Tensor | None = None) -> Tensor:
        if self.uses_gradients and grads is None:
            raise ValueError(f"{self.name} needs gradients; capture them first")
        g = grads if grads is not None else acts
        return self.combine(acts, g) if cells is None else self.combine_within(acts, g, cells)


CAMS: Registry[CAMMethod] = Registry("CAM method")


_M = TypeVar("_M", bound=type[CAMMethod])


def _takes(func: Callable[..., object], *args: str) -> bool:
    """Whether ``func`` (a method, unbound) takes ``self`` and ``args`` positionally."""
    try:
        inspect.signature(func).bind(None, *args)
    except TypeError:
        return False
    except ValueError:  # no signature to read (a builtin): let it run
        return True
    return True


def _shown(name: str, func: Callable[..., object]) -> str:
    """``name(self, acts)``: a function's parameter names, without annotations."""
    try:
        return f"{name}({', '.join(inspect.signature(func).parameters)})"
    except ValueError:
        return f"{name}(...)"


def check_cam_class(name: str, cls: object) -> None:
    """Raise a one-line ``TypeError`` naming the CAM ``name`` and its class unless ``cls`` is a
    :class:`CAMMethod` subclass, built without arguments, that overrides ``combine(acts, grads)`` or, as a
    :class:`GradientCAM`, ``weights(acts, grads)`` — the calls the base classes make."""
    where = f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', repr(cls))}"
    head = f"CAM method {name!r} ({where})"
    if not isinstance(cls, type) or not issubclass(cls, CAMMethod):
        raise TypeError(f"{head} is not a subclass of fakelens.explain.CAMMethod (or GradientCAM)")
    if cls.combine not in (CAMMethod.combine, GradientCAM.combine):
        formula = "combine"
    elif issubclass(cls, GradientCAM) and cls.weights is not GradientCAM.weights:
        formula = "weights"  # called by GradientCAM.combine
    else:
        raise TypeError(
            f"{head} overrides neither combine(acts, grads) nor, as a GradientCAM, weights(acts, grads)"
        )
    func = getattr(cls, formula)
    if not _takes(func, "acts", "grads"):
        raise TypeError(f"{head}: {formula}() must take (self, acts, grads), not {_shown(formula, func)}")
    within = cls.combine_within
    if within is not CAMMethod.combine_within and not _takes(within, "acts", "grads", "cells"):
        shown = _shown("combine_within", within)
        raise TypeError(f"{head}: combine_within() must take (self, acts, grads, cells), not {shown}")
    try:
        inspect.signature(cls).bind()
    except TypeError:
        shown = _shown(cls.__name__, cls).replace("(self, ", "(")
        raise TypeError(f"{head} must be built without arguments, not {shown}") from None
    except ValueError:
        pass


def register_cam(name: str) -> Callable[[_M], _M]:
    """Class decorator: register a :class:`CAMMethod` subclass under ``name`` (its ``--method`` name) in
    :data:`CAMS`. The class is checked first (:func:`check_cam_class`: a subclass that overrides
    ``combine(acts, grads)`` or ``weights(acts, grads)``), so a broken plugin fails when it is imported, in
    one line, not later inside every explanation; a name taken by any method raises :class:`ConfigError`."""

    def deco(cls: _M) -> _M:
        check_cam_class(name, cls)
        CAMS.register(name)(cls)  # a clash raises here, before the class is renamed
        cls.name = name
        return cls

    return deco


class GradientCAM(CAMMethod):
    """A CAM of the form ``Σ_k w_k A^k``; subclasses give the channel weights."""

    def weights(self, acts: Tensor, grads: Tensor) -> Tensor:
        """``(B, C, h, w)`` activations and gradients → ``(B, C)`` channel weights."""
        raise NotImplementedError(f"{type(self).__name__} does not override weights()")

    def combine(self, acts: Tensor, grads: Tensor) -> Tensor:
        return torch.einsum("bc,bchw->bhw", self.weights(acts, grads), acts)


@register_cam("gradcam")
class GradCAM(GradientCAM):
    r"""Grad-CAM (Selvaraju et al., ICCV 2017).

    .. math:: w_k = \frac{1}{hw} \sum_{ij} g^k_{ij}
    """

    def weights(self, acts: Tensor, grads: Tensor) -> Tensor:
        return grads.mean(dim=(2, 3))


@register_cam("gradcam++")
class GradCAMPlusPlus(GradientCAM):
    r"""Grad-CAM++ (Chattopadhay et al., WACV 2018), closed form assuming an exponential output.

    .. math:: \alpha^k_{ij} = \frac{g^2}{2 g^2 + (\sum_{ab} A^k_{ab})\, g^3 + \epsilon},\quad
              w_k = \sum_{ij} \alpha^k_{ij}\, \mathrm{ReLU}(g^k_{ij})

    (ε = 1e-6 as in pytorch-grad-cam; α = 0 where g = 0.) The closed form assumes non-negative activations
    (after a ReLU): at a layer whose activations can be negative, the denominator can pass near 0 and the
    map is ill-conditioned in float32 (25 % off the float64 map at EfficientNet-Lite0's ``blocks.4``,
    as pytorch-grad-cam's is); prefer the post-activation output there, or another method.
    """

    eps = 1e-6

    def weights(self, acts: Tensor, grads: Tensor) -> Tensor:
        g2 = grads * grads
        alpha = g2 / (2 * g2 + acts.sum(dim=(2, 3), keepdim=True) * g2 * grads + self.eps)
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        return (alpha * grads.clamp_min(0)).sum(dim=(2, 3))


@register_cam("xgradcam")
class XGradCAM(GradientCAM):
    r"""XGrad-CAM (Fu et al., BMVC 2020).

    .. math:: w_k = \sum_{ij} \frac{A^k_{ij}}{\sum_{mn} A^k_{mn} + \epsilon} g^k_{ij}

    The paper assumes non-negative activations (after a ReLU). At a layer whose activations can be negative
    (inside ConvNeXt or EfficientNet blocks) :math:`\sum A^k` can come near 0 and the weight of that channel
    blows up, here as in every implementation: prefer GradCAM or HiResCAM there.
    """

    def weights(self, acts: Tensor, grads: Tensor) -> Tensor:
        return (grads * acts).sum(dim=(2, 3)) / (acts.sum(dim=(2, 3)) + self.eps)


@register_cam("hirescam")
class HiResCAM(CAMMethod):
    r"""HiResCAM (Draelos & Carin, 2020): faithful when the head is global pooling + linear.

    .. math:: S = \sum_k g^k \odot A^k
    """

    def combine(self, acts: Tensor, grads: Tensor) -> Tensor:
        return (grads * acts).sum(dim=1)


@register_cam("gradcam-elementwise")
class GradCAMElementWise(CAMMethod):
    r"""Element-wise Grad-CAM (pytorch-grad-cam's ``GradCAMElementWise``).

    .. math:: S = \sum_k \mathrm{ReLU}(g^k \odot A^k)
    """

    def combine(self, acts: Tensor, grads: Tensor) -> Tensor:
        return (grads * acts).clamp_min(0).sum(dim=1)


@register_cam("layercam")
class LayerCAM(CAMMethod):
    r"""LayerCAM (Jiang et al., IEEE TIP 2021); usable at shallow layers.

    .. math:: S = \sum_k \mathrm{ReLU}(g^k) \odot A^k
    """

    def combine(self, acts: Tensor, grads: Tensor) -> Tensor:
        return (grads.clamp_min(0) * acts).sum(dim=1)


def first_component_projection(x: Tensor, squarings: int = 12, cells: Tensor | None = None) -> Tensor:
    r"""Projection of the centred ``(hw × C)`` matrix of ``x`` ``(B, C, h, w)`` on its first principal axis.

    ``X v₁`` of the SVD ``X = U Σ Vᵀ`` of the row-centred matrix, computed without an SVD: the top
    eigenvector of the small Gram matrix (``XXᵀ`` or ``XᵀX``, whichever is smaller) by repeated squaring
    (``2^squarings`` power steps in ``squarings`` batched matmuls, on the device, no host sync). The error
    shrinks as ``(σ₂/σ₁)^(2^(squarings+1))``: SVD-exact to float precision unless the two leading singular
    values are within about 0.1 % of each other (σ₂/σ₁ = 0.9999 leaves a cosine of 0.997 with v₁), where v₁
    itself is ill-defined and any solver's answer swings between the two axes. Computed in float32, or in
    the input's dtype when wider (float64 stays float64).

    ``cells`` ``(B, h, w)``: the cells that show the image. The mean, the axis and the sign come from them
    alone (every cell is projected): on a letterboxed image the padding's cells would otherwise make the
    first axis "padding versus image" and leave every image cell negative, a blank map.

    The sign of a singular vector is arbitrary; it is fixed deterministically so that the projection
    correlates positively with the channel-mean magnitude ``mean_k |x_k|`` (where features are strong;
    for post-ReLU CNN features the plain mean activation). Peers leave it to the LAPACK build.
    """
    b, c, h, w = x.shape
    dtype = x.dtype
    work = torch.promote_types(x.dtype, torch.float32)
    full = x.to(work).flatten(2).transpose(1, 2)  # (B, n, C)
    keep = (
        torch.ones(b, h * w, 1, dtype=work, device=x.device)
        if cells is None
        else cells.reshape(b, h * w, 1).to(device=x.device, dtype=work)
    )
    count = keep.sum(1, keepdim=True).clamp_min(1.0)
    centred = full - (full * keep).sum(1, keepdim=True) / count  # a NaN stays NaN: the map is refused
    xm = centred * keep
    peak = xm.abs().flatten(1).amax(1).view(b, 1, 1)
    xm = xm / torch.where(peak > 0, peak, torch.ones_like(peak))  # the axis is scale-free; the Gram matrix of
    n = xm.shape[1]  # activations of 1e±12 would under- or overflow float32 into a blank map
    gram = xm @ xm.transpose(1, 2) if n <= c else xm.transpose(1, 2) @ xm
    m = gram / gram.flatten(1).norm(dim=1).clamp_min(1e-30).view(b, 1, 1)
    for step in range(squarings):
        m = m @ m
        # after a rescale ‖M‖_F = 1, so two squarings cannot underflow the top eigenvalue
        if step % 2 == 1 or step == squarings - 1:
            m = m / m.flatten(1).norm(dim=1).clamp_min(1e-30).view(b, 1, 1)
    # M ≈ v vᵀ: its column with the largest diagonal entry is the best-conditioned copy of v.
    j = m.diagonal(dim1=1, dim2=2).argmax(dim=1)
    v = torch.gather(m, 2, j.view(b, 1, 1).expand(b, m.shape[1], 1))  # (B, d, 1)
    v = gram @ v  # one plain power step against the unsquared matrix sharpens the estimate
    if n <= c:  # v is the left singular vector u; the axis is Xᵀu = σ v₁
        v = xm.transpose(1, 2) @ (v / v.norm(dim=1, keepdim=True).clamp_min(1e-30))
    proj = (centred @ (v / v.norm(dim=1, keepdim=True).clamp_min(1e-30))).squeeze(-1)
    ref = x.to(work).abs().mean(dim=1).flatten(1)
    k = keep.squeeze(-1)

    def centre(t: Tensor) -> Tensor:
        return (t - (t * k).sum(1, keepdim=True) / count.view(b, 1)) * k

    unit = torch.where(peak > 0, peak, torch.ones_like(peak)).view(b, 1)  # their product must not overflow
    sign = torch.where((centre(proj / unit) * centre(ref / unit)).sum(1) < 0, -1.0, 1.0).to(proj.dtype)
    return (proj * sign[:, None]).view(b, h, w).to(dtype)


@register_cam("eigencam")
class EigenCAM(CAMMethod):
    r"""Eigen-CAM (Muhammad & Yeasin, IJCNN 2020): first principal component of the activations.

    .. math:: S = \bar{A} v_1, \quad \bar{A} = A - \mathrm{mean}_{ij} A,\ \ \bar{A} = U\Sigma V^\top

    Class-agnostic (no gradients). Sign fixed to correlate positively with the mean |activation|. On a
    padded input the components are those of the cells that show the image.
    """

    class_agnostic = True
    uses_gradients = False

    def combine(self, acts: Tensor, grads: Tensor) -> Tensor:
        return first_component_projection(acts)

    def combine_within(self, acts: Tensor, grads: Tensor, cells: Tensor) -> Tensor:
        return first_component_projection(acts, cells=cells)


@register_cam("eigengradcam")
class EigenGradCAM(CAMMethod):
    r"""Eigen-Grad-CAM (pytorch-grad-cam): Eigen-CAM of the gradient-weighted activations.

    .. math:: S = \overline{(A \odot g)}\, v_1

    Sign fixed to correlate positively with the channel-mean of ``|A ⊙ g|``.
    """

    def combine(self, acts: Tensor, grads: Tensor) -> Tensor:
        return first_component_projection(acts * grads)

    def combine_within(self, acts: Tensor, grads: Tensor, cells: Tensor) -> Tensor:
        return first_component_projection(acts * grads, cells=cells)
