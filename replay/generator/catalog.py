"""A synthetic shop catalog: items in 12 categories with Zipf-like popularity.

Within each category a few items get most of the attention (popularity ∝ 1 / rank**s),
as in a real shop; categories themselves are unevenly popular too. Prices are
log-normal around a per-category typical price, in the shop's currency (USD).

>>> cat = Catalog(seed=1, n_items=240)
>>> len(cat.items), len(cat.categories)
(240, 12)
>>> item = cat.items[0]
>>> item.item_id.startswith("item-"), item.price > 0
(True, True)
>>> import random
>>> cat.sample_item(random.Random(0), "books").category
'books'
>>> Catalog(seed=1, n_items=240).items == cat.items
True
"""

from __future__ import annotations

import bisect
import itertools
import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from replay.generator._common import numpy_rng, run_tag

__all__ = ["CATEGORIES", "Catalog", "Item"]

#: category -> (typical price in USD, nouns used in titles)
_CATEGORY_SPECS: dict[str, tuple[float, tuple[str, ...]]] = {
    "electronics": (180.0, ("Headphones", "Smartphone", "Laptop", "Charger", "Speaker",
                            "Smartwatch", "Tablet", "Camera", "Keyboard", "Mouse")),
    "fashion": (45.0, ("T-Shirt", "Jeans", "Sneakers", "Jacket", "Dress", "Scarf", "Hoodie",
                       "Boots", "Cap", "Skirt")),
    "home_kitchen": (40.0, ("Frying Pan", "Blender", "Kettle", "Knife Set", "Mug", "Toaster",
                            "Cutting Board", "Lamp", "Pillow", "Rug")),
    "books": (16.0, ("Novel", "Cookbook", "Atlas", "Biography", "Comic", "Guide", "Poetry",
                     "Textbook", "Thriller", "Anthology")),
    "beauty": (22.0, ("Lipstick", "Face Cream", "Shampoo", "Perfume", "Serum", "Mascara",
                      "Nail Polish", "Soap", "Sunscreen", "Hair Dryer")),
    "sports": (55.0, ("Yoga Mat", "Dumbbell", "Football", "Tennis Racket", "Bike Helmet",
                      "Running Shoes", "Water Bottle", "Backpack", "Tent", "Jump Rope")),
    "toys": (25.0, ("Puzzle", "Teddy Bear", "Building Blocks", "Doll", "Race Car", "Kite",
                    "Board Game", "Robot", "Train Set", "Ball")),
    "grocery": (8.0, ("Coffee", "Tea", "Olive Oil", "Chocolate", "Pasta", "Honey", "Rice",
                      "Granola", "Spices", "Juice")),
    "garden": (35.0, ("Hose", "Shovel", "Planter", "Seeds", "Lawn Chair", "Pruner",
                      "Watering Can", "Bird Feeder", "Lantern", "Gloves")),
    "automotive": (40.0, ("Car Charger", "Wiper Blades", "Seat Cover", "Tire Gauge", "Dash Cam",
                          "Floor Mats", "Jump Starter", "Car Wax", "Phone Mount", "Air Filter")),
    "jewelry": (120.0, ("Ring", "Necklace", "Bracelet", "Earrings", "Watch", "Pendant",
                        "Brooch", "Anklet", "Cufflinks", "Charm")),
    "pet_supplies": (20.0, ("Dog Bed", "Cat Tree", "Leash", "Pet Food", "Chew Toy", "Litter Box",
                            "Aquarium", "Bird Cage", "Collar", "Pet Brush")),
}

#: The catalog's categories, in a fixed order (index = position in taste vectors).
CATEGORIES: tuple[str, ...] = tuple(_CATEGORY_SPECS)

_ADJECTIVES = ("Classic", "Pro", "Ultra", "Compact", "Deluxe", "Eco", "Smart", "Vintage",
               "Premium", "Essential", "Urban", "Lite", "Max", "Original", "Travel")
_COLOURS = ("Black", "White", "Red", "Blue", "Green", "Grey", "Silver", "Gold", "Pink",
            "Navy", "Beige", "Orange")


@dataclass(frozen=True, slots=True)
class Item:
    """One catalog item; ``price`` is in USD."""

    item_id: str
    title: str
    category: str
    price: float

    def to_value(self, ts: int) -> dict[str, Any]:
        """The ``catalog`` event value (schema ``catalog_item``) of this item at ``ts``."""
        return {"item_id": self.item_id, "title": self.title, "category": self.category,
                "price": self.price, "ts": ts}


class Catalog:
    """``n_items`` items spread over :data:`CATEGORIES`, with per-category popularity.

    ``zipf_s`` is the exponent of the item popularity law inside a category (1.0–1.3 is
    typical of shops). :meth:`sample_item` and :meth:`sample_category` draw with those
    popularities from a caller's RNG, so that each consumer keeps its own stream.
    """

    def __init__(self, seed: int = 0, n_items: int = 1200, zipf_s: float = 1.1) -> None:
        if n_items < len(CATEGORIES):
            raise ValueError(f"n_items must be at least {len(CATEGORIES)}, got {n_items}")
        rng = numpy_rng(seed, "catalog")
        tag = run_tag(seed)
        # Uneven category sizes and popularity: a Dirichlet draw, floored so none is empty.
        share = rng.dirichlet(np.full(len(CATEGORIES), 4.0))
        sizes = np.maximum(1, np.floor(share * n_items).astype(int))
        sizes[int(np.argmax(sizes))] += n_items - int(sizes.sum())
        self.category_weights: tuple[float, ...] = tuple(
            float(w) for w in rng.dirichlet(np.full(len(CATEGORIES), 3.0))
        )
        self._category_cdf = list(itertools.accumulate(self.category_weights))
        self.items: list[Item] = []
        self.by_category: dict[str, list[Item]] = {}
        self.popularity: dict[str, float] = {}
        self._cdf: dict[str, list[float]] = {}
        counter = 0
        for category, size in zip(CATEGORIES, sizes.tolist(), strict=True):
            typical, nouns = _CATEGORY_SPECS[category]
            prices = typical * np.exp(rng.normal(0.0, 0.55, size))
            adjectives = rng.integers(0, len(_ADJECTIVES), size)
            colours = rng.integers(0, len(_COLOURS), size)
            noun_idx = rng.integers(0, len(nouns), size)
            members: list[Item] = []
            for i in range(size):
                counter += 1
                title = (f"{_ADJECTIVES[adjectives[i]]} {_COLOURS[colours[i]]} "
                         f"{nouns[noun_idx[i]]}")
                price = max(0.99, round(float(prices[i]), 2))
                members.append(Item(f"item-{tag}-{counter:06d}", title, category, price))
            # Popularity rank is independent of the item's position in the listing.
            ranks = rng.permutation(size) + 1
            weights = 1.0 / ranks.astype(float) ** zipf_s
            weights /= weights.sum()
            for item, w in zip(members, weights.tolist(), strict=True):
                self.popularity[item.item_id] = w
            self._cdf[category] = list(itertools.accumulate(weights.tolist()))
            self.by_category[category] = members
            self.items.extend(members)
        self._by_id = {item.item_id: item for item in self.items}
        self._index = {item.item_id: i for i, item in enumerate(self.items)}
        self._member_index = {item.item_id: i for members in self.by_category.values()
                              for i, item in enumerate(members)}
        self._price_rng = random.Random(int(rng.integers(0, 2**63)))

    @property
    def categories(self) -> tuple[str, ...]:
        return CATEGORIES

    def __len__(self) -> int:
        return len(self.items)

    def item(self, item_id: str) -> Item:
        """The item with id ``item_id`` (``KeyError`` if unknown)."""
        return self._by_id[item_id]

    def sample_category(self, rng: random.Random) -> str:
        """A category drawn with the shop-wide category popularity."""
        i = bisect.bisect_left(self._category_cdf, rng.random() * self._category_cdf[-1])
        return CATEGORIES[min(i, len(CATEGORIES) - 1)]

    def sample_item(self, rng: random.Random, category: str) -> Item:
        """An item of ``category`` drawn with the Zipf-like popularity of that category."""
        cdf = self._cdf[category]
        members = self.by_category[category]
        i = bisect.bisect_left(cdf, rng.random() * cdf[-1])
        return members[min(i, len(members) - 1)]

    def events(self, ts: int) -> list[dict[str, Any]]:
        """The whole catalog as ``catalog`` event values at time ``ts``."""
        return [item.to_value(ts) for item in self.items]

    def price_update(self, ts: int) -> dict[str, Any]:
        """Re-price one random item by -20 %..+10 % and return its new ``catalog`` value."""
        rng = self._price_rng
        old = self.items[rng.randrange(len(self.items))]
        price = max(0.99, round(old.price * rng.uniform(0.8, 1.1), 2))
        new = Item(old.item_id, old.title, old.category, price)
        self._by_id[new.item_id] = new
        self.items[self._index[old.item_id]] = new
        self.by_category[new.category][self._member_index[old.item_id]] = new
        return new.to_value(ts)
