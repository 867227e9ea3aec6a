"""A loaded run's recipe.json checked before any tab reads it: a person may send any JSON, and a
list where an object belongs must be a sentence, not "AttributeError".

Only the shape is checked (what `core.recipe.make_recipe` writes and the tabs read back); each
problem is one sentence, all of them in one `UserError`.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from core.errors import UserError

MAX_SEED = 2 ** 31 - 1


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a text", bool: "true/false", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def _is_text(v: Any) -> bool:
    return isinstance(v, str)


def _is_seed(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_SEED


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_size(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _numbers(count: int, test: Callable[[Any], bool] = _is_number) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and len(v) == count and all(test(x) for x in v)


# what each field may be when present (null is always allowed, except for the recipe itself)
TOP: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "tab": ("a text (the tab's id)", _is_text),
    "operation": ("a text", _is_text),
    "model_id": ("a text (a model id)", _is_text),
    "seed": ("a whole number from 0 to 2147483647", _is_seed),
    "seeds": ("a list of whole numbers from 0 to 2147483647",
              lambda v: isinstance(v, list) and all(_is_seed(s) for s in v)),
    "settings": ("an object (the run's settings by name)", lambda v: isinstance(v, dict)),
    "models": ("an object (the models by role)",
               lambda v: isinstance(v, dict) and all(isinstance(m, dict) for m in v.values())),
    "app": ("an object", lambda v: isinstance(v, dict)),
    "bundle": ("an object", lambda v: isinstance(v, dict)),
    "created": ("a text", _is_text),
    "device": ("a text", _is_text),
    "notes": ("a text", _is_text),
}
SETTINGS = {"truncation": ("a number", _is_number),
            "photo_code": ("an object (the model and method of the photo code)", lambda v: isinstance(v, dict))}
PHOTO_CODE = {"model": ("a text (a model id)", _is_text), "method": ("a text", _is_text),
              "photo": ("an object (where the crop lies in the photo)", lambda v: isinstance(v, dict))}
PHOTO = {"quad": ("four [x, y] corners", _numbers(4, _numbers(2))),
         "framing": ("a text", _is_text),
         "photo_size": ("[width, height] in pixels", _numbers(2, _is_size)),
         "content": ("[left, top, right, bottom] in pixels", _numbers(4, _is_number))}


def _problems(obj: dict, rules: dict, where: str, required: tuple[str, ...] = ()) -> list[str]:
    out = [f"{where}'{key}' is missing." for key in required if obj.get(key) is None]
    for key, (should, test) in rules.items():
        value = obj.get(key)
        if value is not None and not test(value):
            out.append(f"{where}'{key}' must be {should}, not {_kind(value)}.")
    return out


def recipe_problems(recipe: Any) -> list[str]:
    """Each way `recipe` (a parsed recipe.json) is not the shape a run's recipe has, as a sentence."""
    if not isinstance(recipe, dict):
        return [f"It is {_kind(recipe)}, not an object (a run's settings by name)."]
    problems = _problems(recipe, TOP, "")
    settings = recipe.get("settings")
    if not isinstance(settings, dict):
        return problems
    problems += _problems(settings, SETTINGS, "settings ")
    code = settings.get("photo_code")
    if isinstance(code, dict) and code:
        problems += _problems(code, PHOTO_CODE, "photo_code ", required=("model",))
        photo = code.get("photo")
        if isinstance(photo, dict):
            problems += _problems(photo, PHOTO, "photo_code photo ", required=tuple(PHOTO))
    return problems


def check_recipe(recipe: Any) -> dict:
    """`recipe` if it has a run's shape; else a UserError with one sentence per problem."""
    problems = recipe_problems(recipe)
    if problems:
        raise UserError("That run's recipe.json cannot be used. " + " ".join(problems))
    return recipe
