"""Drawing in the canonical face frame: a head pose, an affine placement and anti-aliased shapes.

Shapes are given in the canonical 112x112 frame (see ``identity.py``). Each point is first
turned with the head (yaw and pitch, faked by putting the point on an ellipsoid around the
head centre and rotating it), then mapped by a 2x3 similarity into the output image. Shapes are
filled by OpenCV with 4 bits of sub-pixel precision and anti-aliased edges, drawn straight at
the output resolution: no supersampling, which keeps rendering near a millisecond an image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from facescale.data.synth.identity import HEAD_CX, HEAD_CY

_SHIFT = 4  # sub-pixel bits passed to OpenCV
_ONE = float(1 << _SHIFT)

Color = Sequence[float]


def ellipse_points(
    cx: float,
    cy: float,
    ax: float,
    ay: float,
    angle: float = 0.0,
    n: int = 24,
    t0: float = 0.0,
    t1: float = 2 * math.pi,
) -> np.ndarray:
    """``n`` points on an ellipse (or the arc from ``t0`` to ``t1`` radians), ``[n, 2]``.

    ``angle`` (degrees) turns the axes; ``t`` grows clockwise on screen (y points down).
    """
    t = np.linspace(t0, t1, n, endpoint=(t1 - t0) < 2 * math.pi - 1e-9)
    x, y = ax * np.cos(t), ay * np.sin(t)
    if angle:
        c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        x, y = c * x - s * y, s * x + c * y
    return np.stack([x + cx, y + cy], axis=1)


class Painter:
    """Draws canonical-frame shapes onto ``image`` (uint8 ``[H, W, 3]``, modified in place).

    ``matrix``: 2x3 similarity from the (posed) canonical frame to image pixels.
    ``yaw``/``pitch``: head rotation in degrees. ``radii``: the head ellipsoid (x, y, z)
    used to give every point a depth, so turning the head moves the nose more than the cheeks.
    """

    def __init__(
        self,
        image: np.ndarray,
        matrix: np.ndarray,
        yaw: float = 0.0,
        pitch: float = 0.0,
        radii: tuple[float, float, float] = (40.0, 55.0, 36.0),
    ) -> None:
        self.image = image
        m = np.asarray(matrix, dtype=np.float64)
        self.scale = math.sqrt(abs(np.linalg.det(m[:, :2])))
        cy, sy = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
        cp, sp = math.cos(math.radians(pitch)), math.sin(math.radians(pitch))
        # Turning the head and placing it fold into one map: out = linear @ p + z * depth_dir + offset.
        self._linear_t = (m[:, :2] @ np.diag([cy, cp])).T.copy()
        self._depth_dir = m[:, :2] @ np.array([sy, sp])
        self._offset = m[:, :2] @ np.array([HEAD_CX * (1 - cy), HEAD_CY * (1 - cp)]) + m[:, 2]
        self._center = np.array([HEAD_CX, HEAD_CY])
        self._inv_radii = 1.0 / np.array(radii[:2])
        self._rz = float(radii[2])

    def depth(self, points: np.ndarray) -> np.ndarray:
        """Height of each canonical point above the head's silhouette plane, ``[K]``."""
        d = (points - self._center) * self._inv_radii
        return self._rz * np.sqrt(np.maximum(1.0 - np.einsum("ij,ij->i", d, d), 0.0))

    def project(self, points: np.ndarray, z: float | np.ndarray | None = None) -> np.ndarray:
        """Canonical points ``[K, 2]`` -> image pixels ``[K, 2]``, float64.

        ``z``: depth of the points (``None``: on the head ellipsoid; ``0``: on the silhouette).
        """
        points = np.asarray(points, dtype=np.float64)
        if z is None:
            z = self.depth(points)
        out = points @ self._linear_t + self._offset
        if np.ndim(z) == 0:
            return out + float(z) * self._depth_dir  # type: ignore[arg-type]
        return out + np.multiply.outer(z, self._depth_dir)

    def _fixed(self, points: np.ndarray, z: float | np.ndarray | None) -> np.ndarray:
        return (self.project(points, z) * _ONE).round().astype(np.int32)

    def fill(self, points: np.ndarray, color: Color, z: float | np.ndarray | None = None) -> None:
        """Fill the polygon through canonical ``points`` ``[K, 2]``."""
        cv2.fillPoly(self.image, [self._fixed(points, z)], _cv_color(color), cv2.LINE_AA, _SHIFT)

    def stroke(
        self,
        points: np.ndarray,
        color: Color,
        thickness: float,
        closed: bool = False,
        z: float | np.ndarray | None = None,
    ) -> None:
        """Draw a polyline of canonical ``thickness`` through ``points`` ``[K, 2]``."""
        width = max(1, round(thickness * self.scale))
        polyline = [self._fixed(points, z)]
        cv2.polylines(self.image, polyline, closed, _cv_color(color), width, cv2.LINE_AA, _SHIFT)

    def dot(self, center: Sequence[float], radius: float, color: Color, z: float | None = None) -> None:
        """A filled disc of canonical ``radius``."""
        p = self.project(np.asarray([center], dtype=np.float64), z)[0]
        r = max(0.5, radius * self.scale)
        cv2.circle(
            self.image,
            (round(p[0] * _ONE), round(p[1] * _ONE)),
            round(r * _ONE),
            _cv_color(color),
            -1,
            cv2.LINE_AA,
            _SHIFT,
        )


def _cv_color(color: Color) -> tuple[float, float, float]:
    # The image is RGB and OpenCV ignores channel order: colours pass straight through.
    return (float(color[0]), float(color[1]), float(color[2]))


def shade(color: Color, factor: float) -> tuple[int, int, int]:
    """``color`` scaled by ``factor`` (darker below 1), clipped to [0, 255]."""
    return tuple(int(min(255.0, max(0.0, c * factor))) for c in color)  # type: ignore[return-value]


def mix(a: Color, b: Color, t: float) -> tuple[int, int, int]:
    """Linear blend ``(1 - t) * a + t * b``."""
    return tuple(round(x * (1 - t) + y * t) for x, y in zip(a, b))  # type: ignore[return-value]
