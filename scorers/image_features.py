"""Colour and texture statistics of an image: the classifier stage's input features.

Pure numpy on an (H, W, 3) uint8 RGB array, reduced first to ``THUMB`` x ``THUMB`` so a
feature vector costs the same for a thumbnail and a 20 MB photo. The features are the
crude cues the synthetic policy categories differ by (skin-tone area, red on dark,
darkness, saturation, edges); a registered model may use any subset or none (a model
with a 4-D image input gets pixels instead).

>>> import numpy as np
>>> grey = np.full((32, 48, 3), 200, np.uint8)
>>> f = image_features(grey)
>>> f.shape == (len(FEATURE_NAMES),), float(f[FEATURE_NAMES.index("skin_frac")])
(True, 0.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image

__all__ = ["FEATURE_NAMES", "THUMB", "feature_matrix", "image_features", "thumbnail"]

THUMB = 64
FEATURE_NAMES: tuple[str, ...] = (
    "mean_r", "mean_g", "mean_b", "std_r", "std_g", "std_b",
    "luma_mean", "luma_std", "dark_frac", "bright_frac",
    "skin_frac", "skin_cells", "red_frac", "red_cells", "nonred_luma",
    "sat_mean", "sat_std", "grey_frac", "edge_mean", "edge_frac",
    "hue_red", "hue_yellow", "hue_green", "hue_cyan", "hue_blue", "hue_magenta",
)


def thumbnail(image: npt.NDArray[np.uint8], side: int = THUMB) -> npt.NDArray[np.float32]:
    """``image`` resized to ``side`` x ``side`` (aspect not kept), float32 in [0, 255]."""
    small = Image.fromarray(image).resize((side, side), Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.float32)


def _cells(mask: npt.NDArray[np.bool_], grid: int = 8) -> float:
    """Share of a grid's cells that the mask covers by more than half (a big region,
    not scattered pixels)."""
    h, w = mask.shape
    blocks = mask[: h - h % grid, : w - w % grid].reshape(grid, h // grid, grid, w // grid)
    return float((blocks.mean(axis=(1, 3)) > 0.5).mean())


def image_features(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """The ``FEATURE_NAMES`` vector of one RGB image."""
    px = thumbnail(image)
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    mx, mn = px.max(axis=2), px.min(axis=2)
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1.0), 0.0)
    # Kovac et al.'s RGB skin rule (daylight).
    skin = ((r > 95) & (g > 40) & (b > 20) & (mx - mn > 15) & (np.abs(r - g) > 15)
            & (r > g) & (r > b))
    red = (r > 110) & (g < 70) & (b < 70)
    nonred = ~red
    gy = np.abs(np.diff(luma, axis=0))
    gx = np.abs(np.diff(luma, axis=1))
    edges = np.concatenate([gx.ravel(), gy.ravel()])
    hue = _hue(r, g, b, mx, mn)
    weight = sat * (mx > 40)
    total = max(float(weight.sum()), 1e-6)
    hue_hist = [float(weight[(hue >= lo) & (hue < lo + 60)].sum() / total)
                for lo in range(0, 360, 60)]
    values = [
        float(r.mean()), float(g.mean()), float(b.mean()),
        float(r.std()), float(g.std()), float(b.std()),
        float(luma.mean()), float(luma.std()),
        float((luma < 60).mean()), float((luma > 200).mean()),
        float(skin.mean()), _cells(skin), float(red.mean()), _cells(red),
        float(luma[nonred].mean()) if nonred.any() else 0.0,
        float(sat.mean()), float(sat.std()),
        float(((sat < 0.1) & (luma > 180)).mean()),
        float(edges.mean()), float((edges > 40).mean()),
        *hue_hist,
    ]
    return np.asarray(values, dtype=np.float32)


def _hue(r: npt.NDArray[np.float32], g: npt.NDArray[np.float32], b: npt.NDArray[np.float32],
         mx: npt.NDArray[np.float32], mn: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    d = np.maximum(mx - mn, 1e-6)
    h = np.where(mx == r, ((g - b) / d) % 6, np.where(mx == g, (b - r) / d + 2, (r - g) / d + 4))
    return np.asarray(h * 60.0, dtype=np.float64)


def feature_matrix(images: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
    """One row of :func:`image_features` per image, shape ``(n, len(FEATURE_NAMES))``."""
    if not images:
        return np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
    return np.stack([image_features(im) for im in images])
