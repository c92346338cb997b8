"""Forgeries with exact ground-truth masks, and the dataset builder that writes them.

Recipes live in :data:`RECIPES` (``self_blend``, ``cross_blend``, ``local_warp``, ``upsample``, ``resample``,
``double_jpeg``); each maps ``(image, rng)`` to ``(fake, mask)``. Real and fake then leave through
:func:`encode_pair`, so they share size, format and JPEG history. :func:`synth` writes a dataset of such
pairs from the real-photo pool (:mod:`fakelens.data.pool`), and :func:`contact_sheet` draws it.
"""

from fakelens.forgery.dataset import SynthResult, contact_sheet, synth
from fakelens.forgery.encode import decode, encode, encode_pair
from fakelens.forgery.recipes import RECIPES, Forgery, Recipe, make_recipe, parse_recipes, recipe_specs

__all__ = [
    "RECIPES",
    "Forgery",
    "Recipe",
    "SynthResult",
    "contact_sheet",
    "decode",
    "encode",
    "encode_pair",
    "make_recipe",
    "parse_recipes",
    "recipe_specs",
    "synth",
]
