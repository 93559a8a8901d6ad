"""Product-image uploads written as real files, with a ground-truth category for each.

Most uploads are benign product shots (shapes on a plain background, sometimes the
product's title or a harmless promo line); some break the policy, in the categories
the moderation models judge: ``text_contact_info`` (phone numbers, WhatsApp, URLs,
e-mail), ``text_banned_words`` (counterfeits, prescription drugs, ...), ``nudity``
(large skin-tone regions, a crude proxy) and ``violence`` (red splatter on dark
backgrounds, blades). A few files are broken on purpose (``broken_truncated``: a JPEG cut
short; ``broken_not_image``: other bytes with a ``.jpg`` name) to exercise error paths.

Events are ``image-uploads`` values (schema ``image_upload``, key ``upload_id``) whose
``uri`` is the ``file://`` URI of the written file. Ground truth: :meth:`label`,
:meth:`review_verdict` (REJECT for anything but benign) and :meth:`review_event`.

>>> import tempfile
>>> tmp = tempfile.TemporaryDirectory()
>>> sim = ImageUploadSimulator(tmp.name, seed=2, rate_per_s=5.0)
>>> event = sim.pop()
>>> event.value["uri"].startswith("file:///"), event.key == event.value["upload_id"]
(True, True)
>>> sim.label(event.key).category in IMAGE_CATEGORIES
True
>>> sim.review_verdict(event.key) in ("APPROVE", "REJECT")
True
>>> tmp.cleanup()
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from replay.generator._common import (
    DEFAULT_START_TS_MS,
    GeneratedEvent,
    numpy_rng,
    py_rng,
    run_tag,
)
from replay.generator.catalog import Catalog

__all__ = ["BROKEN_CATEGORIES", "IMAGE_CATEGORIES", "POLICY_CATEGORIES", "ImageLabel",
           "ImageUploadSimulator", "render"]

POLICY_CATEGORIES = ("text_contact_info", "text_banned_words", "nudity", "violence")
BROKEN_CATEGORIES = ("broken_truncated", "broken_not_image")
IMAGE_CATEGORIES = ("benign", *POLICY_CATEGORIES, *BROKEN_CATEGORIES)
_POLICY_MIX = (0.35, 0.2, 0.25, 0.2)

_CONTACT = ("Call 555-01{d}", "WhatsApp +1 415 555 01{d}", "www.cheap-deals.biz",
            "Text me 555-01{d}", "deals{d}@cheapmail.com", "Order at www.replica-shop.net",
            "Telegram @fastdeal{d}", "+44 7700 9001{d}", "Call now 1-800-555-01{d}",
            "DM @bestprice_{d}")
_BANNED = ("REPLICA", "100% FAKE", "COUNTERFEIT", "Replica Rolex", "No prescription needed",
           "Cracked software", "Fake ID", "Buy followers", "Stolen goods", "Guns for sale")
_PROMO = ("SALE 20% OFF", "NEW", "Best seller", "Free shipping", "2 for 1", "Limited edition")
_BANNERS = ((255, 235, 59), (255, 255, 255), (255, 120, 120), (140, 220, 255))
_SKIN = ((255, 224, 189), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36),
         (234, 192, 134))
_PRODUCT_COLOURS = ((30, 60, 160), (20, 20, 20), (200, 200, 205), (40, 120, 60),
                    (230, 140, 20), (120, 40, 140), (90, 90, 95), (0, 140, 170))


@dataclass(frozen=True, slots=True)
class ImageLabel:
    """Ground truth of one upload: its category, the rendered text (if any), the file."""

    upload_id: str
    category: str
    path: str
    text: str = ""

    @property
    def violates_policy(self) -> bool:
        return self.category in POLICY_CATEGORIES

    @property
    def broken(self) -> bool:
        return self.category in BROKEN_CATEGORIES

    @property
    def verdict(self) -> str:
        """What a careful human reviewer says: REJECT anything that is not benign."""
        return "APPROVE" if self.category == "benign" else "REJECT"


class ImageUploadSimulator:
    """Uploads at ``rate_per_s``, each written under ``images_dir`` before it is returned.

    ``policy_rate`` is the share of policy-breaking uploads and ``broken_rate`` that of
    broken files; a few "bad" sellers (``bad_seller_share``) upload most of the
    violations. Product ids come from ``catalog`` when given (else fresh ``p-`` ids).
    """

    def __init__(
        self,
        images_dir: str | Path,
        catalog: Catalog | None = None,
        seed: int = 0,
        start_ts_ms: int = DEFAULT_START_TS_MS,
        rate_per_s: float = 2.0,
        policy_rate: float = 0.15,
        broken_rate: float = 0.02,
        n_sellers: int = 200,
        bad_seller_share: float = 0.05,
        size_range: tuple[int, int] = (128, 320),
        jpeg_share: float = 0.7,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be > 0, got {rate_per_s}")
        if not 0 <= policy_rate + broken_rate <= 1:
            raise ValueError("policy_rate + broken_rate must be within [0, 1]")
        self.dir = Path(images_dir).resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.catalog = catalog
        self._tag = run_tag(seed)
        self._rng = py_rng(seed, "images")
        self._np = numpy_rng(seed, "images", "pixels")
        self._start = start_ts_ms
        self._mean_gap_ms = 1000.0 / rate_per_s
        self._t = self._rng.expovariate(1.0) * self._mean_gap_ms
        self._broken_rate = broken_rate
        self._size_range = size_range
        self._jpeg_share = jpeg_share
        self._sellers = [f"seller-{self._tag}-{i:04d}" for i in range(n_sellers)]
        n_bad = max(1, round(n_sellers * bad_seller_share)) if bad_seller_share > 0 else 0
        self._bad = set(self._rng.sample(range(n_sellers), n_bad))
        # Bad sellers break the policy often; the others just enough to reach the target.
        share = n_bad / n_sellers
        self._p_bad = min(0.6, 4 * policy_rate)
        self._p_good = max(0.0, (policy_rate - share * self._p_bad) / max(1e-9, 1 - share))
        self._labels: dict[str, ImageLabel] = {}
        self._count = 0
        self._products = 0

    # -- ground truth -------------------------------------------------------------------

    def label(self, upload_id: str) -> ImageLabel:
        """The ground truth of ``upload_id`` (``KeyError`` if never generated)."""
        return self._labels[upload_id]

    @property
    def labels(self) -> dict[str, ImageLabel]:
        """Every upload generated so far, by upload id (a copy)."""
        return dict(self._labels)

    def review_verdict(self, upload_id: str) -> str:
        """``'APPROVE'`` or ``'REJECT'``: what a human reviewer decides for ``upload_id``."""
        return self._labels[upload_id].verdict

    def review_event(self, upload_id: str, ts: int, reviewer: str = "synthetic-reviewer"
                     ) -> dict[str, Any]:
        """A ``moderation-reviews`` value (schema ``moderation_review``) for ``upload_id``."""
        return {"upload_id": upload_id, "decision": self.review_verdict(upload_id),
                "reviewer": reviewer, "ts": ts}

    # -- the stream ---------------------------------------------------------------------

    @property
    def next_ts(self) -> int:
        return self._start + int(self._t)

    def pop(self) -> GeneratedEvent:
        """Write the next upload's file and return its ``image-uploads`` event."""
        rng = self._rng
        ts = self.next_ts
        self._count += 1
        upload_id = f"img-{self._tag}-{self._count:08d}"
        seller = rng.randrange(len(self._sellers))
        title = ""
        if self.catalog is not None and rng.random() < 0.8:
            item = self.catalog.items[rng.randrange(len(self.catalog.items))]
            product_id, title = item.item_id, item.title
        else:
            self._products += 1
            product_id = f"p-{self._tag}-{self._products:07d}"
        category = self._category(seller in self._bad)
        label = self._write(upload_id, category, title)
        self._labels[upload_id] = label
        self._t += rng.expovariate(1.0) * self._mean_gap_ms
        value = {"upload_id": upload_id, "product_id": product_id,
                 "seller_id": self._sellers[seller], "uri": Path(label.path).as_uri(),
                 "ts": ts}
        return GeneratedEvent("image-uploads", upload_id, value, ts)

    # -- internals ----------------------------------------------------------------------

    def _category(self, bad_seller: bool) -> str:
        rng = self._rng
        u = rng.random()
        if u < self._broken_rate:
            return BROKEN_CATEGORIES[0] if rng.random() < 0.5 else BROKEN_CATEGORIES[1]
        if rng.random() < (self._p_bad if bad_seller else self._p_good):
            return rng.choices(POLICY_CATEGORIES, weights=_POLICY_MIX)[0]
        return "benign"

    def _write(self, upload_id: str, category: str, title: str) -> ImageLabel:
        rng = self._rng
        lo, hi = self._size_range
        if category != "benign":  # text must stay legible for OCR: no tiny images
            lo = max(lo, min(hi, 224))
        w, h = rng.randint(lo, hi), rng.randint(lo, hi)
        text = ""
        if category == "broken_not_image":
            path = self.dir / f"{upload_id}.jpg"
            junk = (b"<html><body>404 Not Found</body></html>" if rng.random() < 0.5
                    else self._np.bytes(rng.randint(64, 2048)))
            path.write_bytes(junk)
            return ImageLabel(upload_id, category, str(path))
        img, text = render(category, rng, self._np, w, h, title)
        jpeg = category == "broken_truncated" or rng.random() < self._jpeg_share
        buf = io.BytesIO()
        if jpeg:
            img.save(buf, format="JPEG", quality=88)
        else:
            img.save(buf, format="PNG")
        data = buf.getvalue()
        if category == "broken_truncated":
            data = data[: int(len(data) * rng.uniform(0.3, 0.7))]
        path = self.dir / f"{upload_id}.{'jpg' if jpeg else 'png'}"
        path.write_bytes(data)
        return ImageLabel(upload_id, category, str(path), text)


def render(category: str, rng: random.Random, np_rng: np.random.Generator, w: int, h: int,
           title: str = "") -> tuple[Image.Image, str]:
    """One in-memory picture of ``category`` (any but the broken ones) and the text
    rendered into it ("" if none): what :class:`ImageUploadSimulator` writes, for
    callers that need pixels without files (training the moderation classifier)."""
    text = ""
    if category == "nudity":
        img = _skin(np_rng, rng, w, h)
    elif category == "violence":
        img = _violence(np_rng, rng, w, h)
    else:
        img = _product(np_rng, rng, w, h)
        if category == "text_contact_info":
            text = rng.choice(_CONTACT).format(d=rng.randint(10, 99))
        elif category == "text_banned_words":
            text = rng.choice(_BANNED)
        elif rng.random() < 0.4:
            text = title if title and rng.random() < 0.6 else rng.choice(_PROMO)
        if text:
            # Banners and big type are common on both sides, so neither gives it away.
            big = category != "benign" or text in _PROMO and rng.random() < 0.5
            _caption(img, text, big, banner=big and rng.random() < 0.7,
                     colour=rng.choice(_BANNERS))
    return img, text


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: a bitmap font
        return ImageFont.load_default()


def _plain(np_rng: np.random.Generator, w: int, h: int, colour: tuple[int, int, int],
           shade: float) -> Image.Image:
    # A soft vertical gradient, as under studio light, and a little sensor noise.
    ramp = np.linspace(0.0, shade, h, dtype=np.float32)[:, None, None]
    base = (np.asarray(colour, np.float32) - ramp).astype(np.int16)
    noise = np_rng.integers(-6, 7, (h, w, 3), dtype=np.int16)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def _product(np_rng: np.random.Generator, rng: random.Random, w: int, h: int) -> Image.Image:
    grey = rng.randint(225, 250)
    img = _plain(np_rng, w, h, (grey, grey, grey - rng.randint(0, 10)), rng.uniform(5, 25))
    draw = ImageDraw.Draw(img)
    colour = rng.choice(_PRODUCT_COLOURS)
    cx, cy = w * rng.uniform(0.4, 0.6), h * rng.uniform(0.4, 0.55)
    rw, rh = w * rng.uniform(0.18, 0.32), h * rng.uniform(0.15, 0.3)
    box = (cx - rw, cy - rh, cx + rw, cy + rh)
    shape = rng.randrange(3)
    if shape == 0:
        draw.rounded_rectangle(box, radius=int(min(rw, rh) * 0.3), fill=colour)
    elif shape == 1:
        draw.ellipse(box, fill=colour)
    else:
        draw.polygon([(cx, cy - rh), (cx + rw, cy + rh), (cx - rw, cy + rh)], fill=colour)
    accent = tuple(min(255, c + 60) for c in colour)
    draw.rectangle((cx - rw * 0.5, cy - rh * 0.15, cx + rw * 0.5, cy + rh * 0.15),
                   fill=(accent[0], accent[1], accent[2]))
    return img


def _skin(np_rng: np.random.Generator, rng: random.Random, w: int, h: int) -> Image.Image:
    base = rng.choice(_SKIN)
    img = _plain(np_rng, w, h, base, rng.uniform(10, 40))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(2, 4)):  # body-like rounded masses, shaded
        tone = tuple(max(0, c - rng.randint(0, 35)) for c in rng.choice(_SKIN))
        x, y = w * rng.uniform(0.1, 0.7), h * rng.uniform(0.1, 0.7)
        draw.ellipse((x, y, x + w * rng.uniform(0.3, 0.6), y + h * rng.uniform(0.3, 0.6)),
                     fill=(tone[0], tone[1], tone[2]))
    return img


def _violence(np_rng: np.random.Generator, rng: random.Random, w: int, h: int) -> Image.Image:
    dark = rng.randint(15, 60)
    img = _plain(np_rng, w, h, (dark, dark - 5 if dark > 5 else 0, dark), 10.0)
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(12, 30)):  # splatter
        red = (rng.randint(120, 210), rng.randint(0, 25), rng.randint(0, 25))
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(4, min(w, h) * 0.2)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=red)
        if rng.random() < 0.4:  # a drip
            draw.line((x, y, x + rng.uniform(-3, 3), y + rng.uniform(10, h * 0.3)), fill=red,
                      width=max(2, int(r / 3)))
    if rng.random() < 0.5:  # a blade
        x, y = w * rng.uniform(0.2, 0.5), h * rng.uniform(0.3, 0.6)
        draw.polygon([(x, y), (x + w * 0.4, y - h * 0.08), (x + w * 0.42, y)],
                     fill=(190, 190, 200))
        draw.rectangle((x - w * 0.12, y - h * 0.03, x, y + h * 0.02), fill=(60, 35, 20))
    return img


def _caption(img: Image.Image, text: str, big: bool, banner: bool,
             colour: tuple[int, int, int]) -> None:
    w, h = img.size
    draw = ImageDraw.Draw(img)
    size = max(12, h // (6 if big else 10))
    while size > 10:
        left, top, right, bottom = draw.textbbox((0, 0), text, font=_font(size))
        if right - left <= w * 0.92:
            break
        size -= 1
    font = _font(size)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = (w - (right - left)) / 2 - left
    y = (h * 0.08 if big else h - (bottom - top) - h * 0.06) - top
    if banner:
        draw.rectangle((0, y + top - 4, w, y + bottom + 4), fill=colour)
    draw.text((x, y), text, font=font, fill=(10, 10, 10) if big else (60, 60, 60))
