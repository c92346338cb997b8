"""Parity with pytorch-grad-cam (test dependency only) on a random torchvision ResNet and a timm ViT.

Both sides are compared after pytorch-grad-cam's own normalisation: ReLU, per-image min-max, cv2 resize
to the input size, min-max again. Deliberate difference: our EigenCAM/EigenGradCAM fix the SVD sign
(positive correlation with the channel-mean magnitude); pytorch-grad-cam leaves it to LAPACK, so those
are compared up to sign.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import timm
import torch
import torchvision

pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam import (
    EigenCAM,
    EigenGradCAM,
    GradCAM,
    GradCAMElementWise,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    XGradCAM,
)
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

from fakelens.explain import capture, explain
from fakelens.models import Detector, InputSpec, TokenLayout

PEERS = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "hirescam": HiResCAM,
    "xgradcam": XGradCAM,
    "layercam": LayerCAM,
    "gradcam-elementwise": GradCAMElementWise,
    "eigengradcam": EigenGradCAM,
    "eigencam": EigenCAM,
}
SIGNED = {"eigencam", "eigengradcam"}


def fake_log_odds(out: torch.Tensor) -> torch.Tensor:
    return out[1] - out[0]


def _minmax(m: np.ndarray) -> np.ndarray:
    m = m - m.min()
    return m / (1e-7 + m.max())


def peer_normalise(raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """pytorch-grad-cam's pipeline: ReLU, min-max, cv2 resize, then min-max again (its layer aggregation)."""
    return np.float32(
        [_minmax(cv2.resize(np.float32(_minmax(m)), (size[1], size[0]))) for m in np.maximum(raw, 0)]
    )


def resnet_detector() -> Detector:
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=2)
    return Detector(net, input_spec=InputSpec(size=(96, 96)), cam_layers=("net.layer4",)).eval()


def vit_detector() -> tuple[Detector, object]:
    torch.manual_seed(0)
    net = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=64, patch_size=8, depth=2, num_classes=2
    )
    det = Detector(
        net,
        input_spec=InputSpec(size=(64, 64)),
        cam_layers=("net.blocks.1.norm1",),
        token_layout=TokenLayout(num_prefix_tokens=1, patch_size=(8, 8)),
    ).eval()

    def reshape_transform(t: torch.Tensor, h: int = 8, w: int = 8) -> torch.Tensor:
        r = t[:, 1:, :].reshape(t.size(0), h, w, t.size(2))
        return r.transpose(2, 3).transpose(1, 2)

    return det, reshape_transform


CASES = ["resnet", "vit"]


def _setup(case: str):  # type: ignore[no-untyped-def]
    if case == "resnet":
        det, rt = resnet_detector(), None
    else:
        det, rt = vit_detector()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, *det.input_spec.size, generator=g)
    return det, rt, x


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("method", sorted(PEERS))
def test_matches_pytorch_grad_cam(case: str, method: str) -> None:
    det, rt, x = _setup(case)
    size = det.input_spec.size
    ours_raw = explain(det, x, [method])[method].raw.numpy()
    layer = det.layer(det.cam_layers[0])
    with PEERS[method](model=det, target_layers=[layer], reshape_transform=rt) as cam:
        theirs = cam(input_tensor=x, targets=[fake_log_odds] * x.shape[0])
    ours = peer_normalise(ours_raw, size)
    if method not in SIGNED:
        assert np.abs(ours - theirs).max() <= 1e-4
        return
    # Sign: pytorch-grad-cam's projection is ± ours; with its sign, our numbers equal theirs.
    cap = capture(det, x, targets=["fake"], gradients=method == "eigengradcam")
    acts = cap.activations[det.cam_layers[0]]
    src = acts if method == "eigencam" else acts * cap.gradients["fake"][det.cam_layers[0]]
    their_proj = get_2d_projection(src.numpy())
    sign = np.sign((their_proj * ours_raw).reshape(len(x), -1).sum(1))[:, None, None]
    assert np.abs(peer_normalise(ours_raw * sign, size) - theirs).max() <= 1e-4
    # and ours is deterministic: positive correlation with the mean magnitude of the decomposed tensor
    mean = np.abs(src.numpy()).mean(1).reshape(len(x), -1)
    flat = ours_raw.reshape(len(x), -1)
    corr = ((flat - flat.mean(1, keepdims=True)) * (mean - mean.mean(1, keepdims=True))).sum(1)
    assert (corr >= 0).all()
