"""Safe image loading: a URI from ``image-uploads`` to decoded pixels, or a reason.

``image-uploads`` carries a URI, never bytes (CONTRACTS.md, "Images"):

* ``file://`` URIs are opened only inside the allowed roots, after resolving symlinks
  (``..`` segments and links that point outside a root are refused); ``http(s)://`` only
  for the allowed hosts (default none); anything else → dead letter
  ``image.forbidden_uri``. A missing file → dead letter ``image.missing``.
* A file larger than the byte cap, truncated, not an image, in a format outside the
  allowlist, or with more pixels than the pixel cap (a decompression bomb) → a REJECT
  decision whose ``reasons`` hold the code (``image.too_large``, ``image.truncated``,
  ``image.not_image``, ``image.format``, ``image.decompression_bomb``).

Pillow's own decompression-bomb guard stays on; our pixel cap is checked from the
header first, before any pixel is decoded. JPEGs are decoded in draft mode (libjpeg
scales by 1/2, 1/4 or 1/8 while decoding) to about the size the models need; EXIF
orientation is applied. Everything here is blocking and thread-safe: the agent runs it
in a thread pool, off the event loop.

>>> policy = LoadPolicy(roots=(Path("/srv/uploads"),))
>>> def why(uri):
...     try:
...         return resolve_uri(uri, policy)
...     except ImageRefused as exc:
...         return exc.reason
>>> why("file:///etc/passwd"), why("file:///srv/uploads/../../etc/passwd"), why("s3://b/x")
('image.forbidden_uri', 'image.forbidden_uri', 'image.forbidden_uri')
>>> why("file:///srv/uploads/a/b.jpg")
PosixPath('/srv/uploads/a/b.jpg')
"""

from __future__ import annotations

import io
import os
import urllib.parse
import urllib.request
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "DEAD_LETTER_REASONS",
    "ImageRefused",
    "LoadOutcome",
    "LoadPolicy",
    "load_image",
    "resolve_uri",
]

RgbArray = npt.NDArray[np.uint8]

#: Reasons that dead-letter the upload instead of deciding it (CONTRACTS.md).
DEAD_LETTER_REASONS = frozenset({"image.forbidden_uri", "image.missing"})
DEFAULT_FORMATS = ("JPEG", "PNG", "WEBP")


class ImageRefused(Exception):
    """A URI that may not be opened, or a file that cannot be judged; ``reason`` is the
    stable dotted code."""

    def __init__(self, detail: str, reason: str = "image.forbidden_uri") -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class LoadPolicy:
    """Where images may come from and what is accepted."""

    roots: tuple[Path, ...]
    hosts: frozenset[str] = frozenset()
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000
    formats: tuple[str, ...] = DEFAULT_FORMATS
    #: decoded images are reduced so that their longer side is about this (draft mode
    #: for JPEG, then a resize): the largest input any stage needs.
    work_side: int = 640
    http_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "roots", tuple(Path(r).resolve() for r in self.roots))


@dataclass
class LoadOutcome:
    """One upload's load: ``image`` (H, W, 3 uint8 RGB) or ``reason`` (and ``detail``)."""

    image: RgbArray | None = None
    reason: str | None = None
    detail: str = ""
    original_size: tuple[int, int] = (0, 0)
    nbytes: int = 0
    format: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def dead_letter(self) -> bool:
        return self.reason in DEAD_LETTER_REASONS


def resolve_uri(uri: str, policy: LoadPolicy) -> Path | str:
    """The local path of an allowed ``file://`` URI, or the URL of an allowed
    ``http(s)://`` one; :class:`ImageRefused` otherwise (never opens anything)."""
    parsed = urllib.parse.urlsplit(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        host = (parsed.hostname or "").lower()
        if host and host in policy.hosts:
            return uri
        raise ImageRefused(f"host {host!r} is not in TECHSHOP_IMAGE_HOSTS")
    if scheme != "file":
        raise ImageRefused(f"scheme {scheme!r} is not allowed (file, or http(s) for "
                           "allowed hosts)")
    if parsed.netloc not in ("", "localhost"):
        raise ImageRefused(f"file URI with a remote host {parsed.netloc!r}")
    raw = urllib.parse.unquote(parsed.path)
    if "\x00" in raw or not raw.startswith("/"):
        raise ImageRefused(f"not an absolute path: {raw!r}")
    # Resolve symlinks and '..' before the check: a link inside a root that points
    # outside it is as forbidden as the outside path itself.
    path = Path(os.path.realpath(raw))
    if not any(path == root or root in path.parents for root in policy.roots):
        raise ImageRefused(f"{raw} is outside the allowed image roots")
    return path


def _read(target: Path | str, policy: LoadPolicy) -> bytes:
    if isinstance(target, Path):
        try:
            size = target.stat().st_size
        except FileNotFoundError as exc:
            raise ImageRefused(f"{target} does not exist", "image.missing") from exc
        except OSError as exc:
            raise ImageRefused(f"{target}: {exc.strerror}", "image.missing") from exc
        if not target.is_file():
            raise ImageRefused(f"{target} is not a regular file", "image.not_image")
        if size > policy.max_bytes:
            raise ImageRefused(f"{size} bytes > {policy.max_bytes}", "image.too_large")
        with open(target, "rb") as f:
            data = f.read(policy.max_bytes + 1)
    else:
        request = urllib.request.Request(target, headers={"User-Agent": "techshop-moderation"})
        try:
            with urllib.request.urlopen(request, timeout=policy.http_timeout_s) as resp:
                data = resp.read(policy.max_bytes + 1)
        except OSError as exc:
            raise ImageRefused(f"{target}: {exc}", "image.missing") from exc
    if len(data) > policy.max_bytes:
        raise ImageRefused(f"more than {policy.max_bytes} bytes", "image.too_large")
    return data


def decode(data: bytes, policy: LoadPolicy) -> tuple[RgbArray, tuple[int, int], str]:
    """Decoded RGB pixels (reduced to about ``policy.work_side``), the original size and
    the format; :class:`ImageRefused` with a REJECT reason when it cannot be judged."""
    try:
        with warnings.catch_warnings():
            # Pillow warns (above its limit) or raises (above twice it); our own pixel
            # cap below decides first, the warning must not become an error in tests.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or ""
            if fmt not in policy.formats:
                raise ImageRefused(f"format {fmt or 'unknown'} is not in {policy.formats}",
                                   "image.format")
            w, h = img.size
            if w * h > policy.max_pixels:
                raise ImageRefused(f"{w}x{h} = {w * h} pixels > {policy.max_pixels}",
                                   "image.decompression_bomb")
            if fmt == "JPEG":
                img.draft("RGB", (policy.work_side, policy.work_side))
            img.load()
            pic: Image.Image = ImageOps.exif_transpose(img)
            if pic.mode != "RGB":
                pic = pic.convert("RGBA").convert("RGB") if "A" in pic.mode or pic.mode == "P" \
                    else pic.convert("RGB")
            pic.thumbnail((policy.work_side, policy.work_side), Image.Resampling.BILINEAR)
            return np.asarray(pic, dtype=np.uint8), (w, h), fmt
    except ImageRefused:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageRefused(str(exc), "image.decompression_bomb") from exc
    except UnidentifiedImageError as exc:
        raise ImageRefused(str(exc), "image.not_image") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow says "image file is truncated" / "broken data stream" for cut files.
        raise ImageRefused(f"{type(exc).__name__}: {exc}", "image.truncated") from exc


def load_image(uri: str, policy: LoadPolicy) -> LoadOutcome:
    """Resolve, read and decode one upload; never raises for a bad input."""
    import time

    t0 = time.perf_counter()
    outcome = LoadOutcome()
    try:
        target = resolve_uri(uri, policy)
        data = _read(target, policy)
        outcome.nbytes = len(data)
        t1 = time.perf_counter()
        outcome.timings["read"] = t1 - t0
        outcome.image, outcome.original_size, outcome.format = decode(data, policy)
        outcome.timings["decode"] = time.perf_counter() - t1
    except ImageRefused as exc:
        outcome.reason, outcome.detail = exc.reason, exc.detail
    except Exception as exc:  # a decoder bug must not stop the worker: judge it unreadable
        outcome.reason, outcome.detail = "image.not_image", f"{type(exc).__name__}: {exc}"
    return outcome


def load_images(uris: Sequence[str], policy: LoadPolicy) -> list[LoadOutcome]:
    return [load_image(uri, policy) for uri in uris]
