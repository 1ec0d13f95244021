"""MTCNN face detection: boxes, scores and 5 landmarks per face, from the facenet-pytorch weights.

The three networks (Zhang et al., 2016) are written here; their pretrained weights are the
plain state_dicts that ship inside the ``facenet-pytorch`` wheel (``facenet_pytorch/data/
{pnet,rnet,onet}.pt``). That package pins an old torch and imports torchvision, so it is
installed with ``--no-deps`` and never imported: only its data folder is located.

The cascade:
1. P-Net, fully convolutional, on an image pyramid (scale factor 0.709 from ``12 / min_face``)
   proposes 12x12 windows (stride 2) with a score and a box regression; NMS per scale, then
   across scales.
2. R-Net re-scores 24x24 crops of the squared candidates and refines their boxes; NMS.
3. O-Net re-scores 48x48 crops, refines the boxes and predicts the 5 landmarks (left eye,
   right eye, nose tip, left and right mouth corner, as seen in the image); NMS with the
   intersection-over-smaller-area criterion.

Input is RGB uint8 ``[H, W, 3]``; the networks see ``(pixel - 127.5) / 128``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from facescale.deploy.nms import nms
from facescale.errors import FacescaleError

WEIGHTS_PACKAGE = "facenet_pytorch"
WEIGHTS_INSTALL = 'pip install --no-deps "facenet-pytorch==2.6.0"'


@dataclass
class Detections:
    """Faces found in one image, sorted by decreasing score.

    ``boxes``: float32 ``[K, 4]`` (x1, y1, x2, y2) in pixels; ``scores``: float32 ``[K]``;
    ``landmarks``: float32 ``[K, 5, 2]`` (x, y) in pixels.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, keep: np.ndarray | list[int]) -> Detections:
        """The faces at indices (or boolean mask) ``keep``."""
        return Detections(self.boxes[keep], self.scores[keep], self.landmarks[keep])

    @staticmethod
    def empty() -> Detections:
        return Detections(
            np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32)
        )

    def largest(self) -> int:
        """Index of the face with the largest box area (raises IndexError when there is none)."""
        if len(self) == 0:
            raise IndexError("no faces")
        areas = (self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])
        return int(np.argmax(areas))


class PNet(nn.Module):
    """Proposal network: ``[B, 3, H, W]`` -> (box regression ``[B, 4, h, w]``, face prob ``[B, h, w]``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, 3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, 3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, 3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)[:, 1]


def _flatten_like_training(x: torch.Tensor) -> torch.Tensor:
    # The dense layers were trained on features flattened in (W, H, C) order, not torch's (C, H, W).
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class RNet(nn.Module):
    """Refinement network: ``[B, 3, 24, 24]`` -> (box regression ``[B, 4]``, face prob ``[B]``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, 3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, 3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, 2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(_flatten_like_training(x)))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)[:, 1]


class ONet(nn.Module):
    """Output network: ``[B, 3, 48, 48]`` -> (box regression ``[B, 4]``, landmarks ``[B, 10]``
    (5 x then 5 y, relative to the box), face prob ``[B]``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, 2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(_flatten_like_training(x)))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)[:, 1]


def mtcnn_weights_dir() -> Path:
    """The folder holding ``pnet.pt``, ``rnet.pt``, ``onet.pt``, found without importing the package."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        data = Path(location) / "data"
        if all((data / f"{net}.pt").is_file() for net in ("pnet", "rnet", "onet")):
            return data
    raise FacescaleError(
        f"the MTCNN face-detector weights are not installed (package {WEIGHTS_PACKAGE!r} with "
        f"data/pnet.pt, rnet.pt, onet.pt not found); install them with: {WEIGHTS_INSTALL}"
    )


def _load(net: nn.Module, path: Path) -> nn.Module:
    state = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    return net.eval()


def _to_net_input(crops: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 ``[N, h, w, 3]`` -> float ``[N, 3, h, w]`` scaled as the networks were trained."""
    t = torch.from_numpy(np.ascontiguousarray(crops)).to(device).permute(0, 3, 1, 2).float()
    return (t - 127.5) * 0.0078125


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow each ``[x1, y1, x2, y2]`` box to a square around its centre."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + (w - side) / 2
    out[:, 1] = boxes[:, 1] + (h - side) / 2
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Shift each box edge by its offset times the box width/height (``offsets``: ``[K, 4]``)."""
    w = (boxes[:, 2] - boxes[:, 0])[:, None]
    h = (boxes[:, 3] - boxes[:, 1])[:, None]
    return boxes[:, :4] + offsets * np.concatenate([w, h, w, h], axis=1)


def _crop_resized(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Crop integer-rounded ``boxes`` (zero outside the image) and resize to ``size`` x ``size``."""
    height, width = image.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), dtype=np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(np.round(boxes[:, :4]).astype(np.int64)):
        bw, bh = max(int(x2 - x1), 1), max(int(y2 - y1), 1)
        patch = np.zeros((bh, bw, 3), dtype=np.uint8)
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
        if sx2 > sx1 and sy2 > sy1:
            patch[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = image[sy1:sy2, sx1:sx2]
        shrink = bw > size or bh > size
        out[i] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return out


class MTCNN:
    """The three-stage detector. ``detect(image)`` -> :class:`Detections`.

    ``min_face``: smallest face side in pixels searched for; ``thresholds``: face-probability
    cut-offs of the three stages; ``scale_factor``: pyramid step.
    """

    def __init__(
        self,
        device: str | torch.device = "cpu",
        min_face: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        scale_factor: float = 0.709,
        weights_dir: str | Path | None = None,
    ) -> None:
        if min_face < 12:
            raise FacescaleError(f"min_face must be >= 12 pixels (the P-Net window), got {min_face}")
        folder = Path(weights_dir) if weights_dir is not None else mtcnn_weights_dir()
        self.device = torch.device(device)
        self.pnet = _load(PNet(), folder / "pnet.pt").to(self.device)
        self.rnet = _load(RNet(), folder / "rnet.pt").to(self.device)
        self.onet = _load(ONet(), folder / "onet.pt").to(self.device)
        self.min_face = min_face
        self.thresholds = thresholds
        self.scale_factor = scale_factor

    def _pyramid_scales(self, height: int, width: int) -> list[float]:
        scale = 12.0 / self.min_face
        side = min(height, width) * scale
        scales = []
        while side >= 12:
            scales.append(scale)
            scale *= self.scale_factor
            side *= self.scale_factor
        return scales

    def _propose(self, image: np.ndarray) -> np.ndarray:
        """Stage 1: ``[K, 5]`` candidate boxes (x1, y1, x2, y2, score) in image pixels."""
        height, width = image.shape[:2]
        stride, window = 2, 12
        found = []
        for scale in self._pyramid_scales(height, width):
            h, w = int(np.ceil(height * scale)), int(np.ceil(width * scale))
            scaled = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
            offsets, prob = self.pnet(_to_net_input(scaled[None], self.device))
            prob = prob[0].cpu().numpy()
            rows, cols = np.nonzero(prob >= self.thresholds[0])
            if len(rows) == 0:
                continue
            x1, y1 = cols * stride, rows * stride
            windows = np.stack([x1, y1, x1 + window, y1 + window], 1).astype(np.float32) / scale
            scores = prob[rows, cols]
            keep = nms(windows, scores, 0.5)
            regressed = _regress(windows[keep], offsets[0][:, rows[keep], cols[keep]].T.cpu().numpy())
            found.append(np.concatenate([regressed, scores[keep, None]], axis=1))
        if not found:
            return np.zeros((0, 5), dtype=np.float32)
        boxes = np.concatenate(found)
        return boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]

    def _refine(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Stage 2: re-score 24x24 crops of the squared candidates; ``[K, 5]``."""
        squared = _square(boxes[:, :4])
        offsets, prob = self.rnet(_to_net_input(_crop_resized(image, squared, 24), self.device))
        prob, offsets = prob.cpu().numpy(), offsets.cpu().numpy()
        keep = prob > self.thresholds[1]
        squared, prob, offsets = squared[keep], prob[keep], offsets[keep]
        keep = nms(squared, prob, 0.7)
        return np.concatenate([_regress(squared[keep], offsets[keep]), prob[keep, None]], axis=1)

    def _finish(self, image: np.ndarray, boxes: np.ndarray) -> Detections:
        """Stage 3: re-score 48x48 crops, final boxes and landmarks."""
        squared = _square(boxes[:, :4])
        offsets, points, prob = self.onet(_to_net_input(_crop_resized(image, squared, 48), self.device))
        prob, offsets, points = prob.cpu().numpy(), offsets.cpu().numpy(), points.cpu().numpy()
        keep = prob > self.thresholds[2]
        squared, prob, offsets, points = squared[keep], prob[keep], offsets[keep], points[keep]
        side = (squared[:, 2] - squared[:, 0])[:, None]
        landmarks = np.stack(
            [squared[:, :1] + side * points[:, :5], squared[:, 1:2] + side * points[:, 5:]], axis=2
        )
        final = _regress(squared, offsets)
        keep = nms(final, prob, 0.7, mode="min")
        return Detections(
            boxes=final[keep].astype(np.float32),
            scores=prob[keep].astype(np.float32),
            landmarks=landmarks[keep].astype(np.float32),
        )

    @torch.inference_mode()
    def detect(self, image: np.ndarray) -> Detections:
        """Faces in ``image`` (uint8 ``[H, W, 3]`` RGB), best score first."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise FacescaleError(f"expected a uint8 [H, W, 3] RGB image, got {image.dtype} {image.shape}")
        boxes = self._propose(image)
        if len(boxes):
            boxes = self._refine(image, boxes)
        if len(boxes) == 0:
            return Detections.empty()
        return self._finish(image, boxes)
