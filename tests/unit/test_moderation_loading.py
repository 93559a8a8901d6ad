"""Safe image loading: allowed URIs only, every bad file a reason, never an exception."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agents.moderation.loading import LoadPolicy, load_image, resolve_uri


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "uploads"
    folder.mkdir()
    return folder


def _policy(root: Path, **kw: object) -> LoadPolicy:
    return LoadPolicy(roots=(root,), **kw)  # type: ignore[arg-type]


def test_a_good_jpeg_decodes_reduced_in_draft_mode(root: Path) -> None:
    Image.new("RGB", (2400, 1800), (10, 200, 30)).save(root / "big.jpg", quality=90)
    out = load_image((root / "big.jpg").as_uri(), _policy(root, work_side=640))
    assert out.reason is None and out.image is not None
    assert max(out.image.shape[:2]) <= 640 and out.image.shape[2] == 3
    assert out.original_size == (2400, 1800) and out.format == "JPEG"
    assert out.image[..., 1].mean() > 150


def test_exif_orientation_is_applied(root: Path) -> None:
    img = Image.new("RGB", (200, 100), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    img.save(root / "rotated.jpg", exif=exif.tobytes())
    out = load_image((root / "rotated.jpg").as_uri(), _policy(root))
    assert out.image is not None and out.image.shape[:2] == (200, 100)


def test_png_with_alpha_and_palette_become_rgb(root: Path) -> None:
    Image.new("RGBA", (50, 40), (1, 2, 3, 100)).save(root / "a.png")
    Image.new("P", (50, 40)).save(root / "p.png")
    for name in ("a.png", "p.png"):
        out = load_image((root / name).as_uri(), _policy(root))
        assert out.image is not None and out.image.shape == (40, 50, 3)


@pytest.mark.parametrize("case,reason", [
    ("truncated", "image.truncated"),
    ("html", "image.not_image"),
    ("random", "image.not_image"),
    ("empty", "image.not_image"),
    ("bomb", "image.decompression_bomb"),
    ("bmp", "image.format"),
    ("large", "image.too_large"),
    ("directory", "image.not_image"),
])
def test_bad_files_get_a_reject_reason(root: Path, case: str, reason: str) -> None:
    path = root / f"{case}.jpg"
    if case == "truncated":
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), np.uint8)
                        ).save(buf, "JPEG")
        path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    elif case == "html":
        path.write_bytes(b"<html>404</html>")
    elif case == "random":
        path.write_bytes(np.random.default_rng(1).bytes(2048))
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "bomb":
        Image.new("L", (8000, 8000)).save(path, format="PNG")  # 64 Mpx, tiny file
    elif case == "bmp":
        Image.new("RGB", (10, 10)).save(path, format="BMP")
    elif case == "large":
        path.write_bytes(b"\xff\xd8" + b"0" * 5000)
    elif case == "directory":
        path.mkdir()
    cap = 4096 if case == "large" else 1_000_000
    out = load_image(path.as_uri(), _policy(root, max_pixels=50_000_000, max_bytes=cap))
    assert out.reason == reason, out.detail
    assert out.image is None and not out.dead_letter


def test_pillow_bomb_above_its_own_limit_is_a_bomb_too(root: Path) -> None:
    Image.new("1", (20_000, 20_000)).save(root / "huge.png")  # 400 Mpx: Pillow raises
    out = load_image((root / "huge.png").as_uri(), _policy(root, max_pixels=10**12))
    assert out.reason == "image.decompression_bomb"


@pytest.mark.parametrize("uri", [
    "file:///etc/passwd",
    "file://{root}/../../etc/passwd",
    "file://{root}/%2e%2e/%2e%2e/etc/passwd",
    "file://{root}/link.jpg",
    "file://otherhost{root}/x.jpg",
    "http://example.com/x.jpg",
    "s3://bucket/x.jpg",
    "ftp://x/y.jpg",
    "/no/scheme.jpg",
    "file:relative.jpg",
])
def test_forbidden_uris_are_dead_lettered(root: Path, uri: str) -> None:
    os.symlink("/etc/passwd", root / "link.jpg")
    out = load_image(uri.format(root=root), _policy(root))
    assert out.reason == "image.forbidden_uri" and out.dead_letter


def test_missing_file_is_dead_lettered(root: Path) -> None:
    out = load_image((root / "gone.jpg").as_uri(), _policy(root))
    assert out.reason == "image.missing" and out.dead_letter


def test_symlink_inside_the_root_is_fine_and_hosts_are_allowlisted(root: Path) -> None:
    Image.new("RGB", (10, 10)).save(root / "real.png")
    os.symlink(root / "real.png", root / "alias.png")
    assert load_image((root / "alias.png").as_uri(), _policy(root)).reason is None
    policy = _policy(root, hosts=frozenset({"img.example.com"}))
    assert resolve_uri("https://img.example.com/a.jpg", policy) == "https://img.example.com/a.jpg"
