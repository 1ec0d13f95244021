"""5-point face alignment: warp a photo so its landmarks land on the ArcFace 112x112 template.

The template and the similarity fit live in ``facescale.models.face_template`` (the synthetic
data renders onto the same template); this module applies them to images.
"""

from __future__ import annotations

import cv2
import numpy as np

from facescale.models.face_template import ARCFACE_TEMPLATE, estimate_similarity


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """Warp ``image`` (``[H, W, 3]`` uint8) so ``landmarks`` (``[5, 2]``) land on the template.

    Returns ``[size, size, 3]`` uint8; the template is scaled by ``size / 112``.
    """
    template = ARCFACE_TEMPLATE * (size / 112.0)
    matrix = estimate_similarity(np.asarray(landmarks, dtype=np.float64).reshape(5, 2), template)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)
