"""ImageNet classes for the class-conditional generators (BigGAN-deep, SNGAN): their names,
a person's typed class read back, and a class's index in one model (the authors' dog+cat SNGAN
starts at ImageNet class 151)."""
from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
from pathlib import Path

import torch

from core.errors import UserError


@functools.cache  # constant data, read once (a pure function of the installed file)
def imagenet_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names in BigGAN's index order: torchvision's list, read from
    its source file as data (importing torchvision costs seconds of start-up)."""
    spec = importlib.util.find_spec("torchvision")  # finds the package without importing it
    source = Path(spec.submodule_search_locations[0], "models", "_meta.py").read_text("utf-8")
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "_IMAGENET_CATEGORIES":
            return tuple(ast.literal_eval(node.value))
    raise RuntimeError("torchvision's ImageNet class list was not found")


def class_choices() -> list[str]:
    """"0: tench", "1: goldfish", ...: a class picker's choices."""
    return [f"{i}: {name}" for i, name in enumerate(imagenet_names())]


def parse_class(text: str | int | None) -> int:
    """"207: golden retriever", "golden retriever" or "207" -> 207; anything else is a
    UserError that suggests the closest names."""
    names = imagenet_names()
    s = str(text if text is not None else "").strip()
    head = s.split(":", 1)[0].strip()
    if head.isdigit() and int(head) < len(names):
        return int(head)
    lowered = [n.lower() for n in names]
    if s.lower() in lowered:
        return lowered.index(s.lower())
    close = difflib.get_close_matches(s.lower(), lowered, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(names[lowered.index(c)]) for c in close)}?" if close else ""
    raise UserError(f"{s!r} is not an ImageNet class (type a name from the list, or 0-999).{hint}")


def is_sngan(G) -> bool:
    from core.models.sngan import SNGANGenerator  # model code loads with a model

    return isinstance(G, SNGANGenerator)


def class_offset(G) -> int:
    """ImageNet index of the model's class 0 (151 for the dog+cat SNGAN, else 0)."""
    from core.models.sngan import CLASS_OFFSET

    return CLASS_OFFSET if is_sngan(G) and G.num_classes == 143 else 0


def model_class(G, imagenet_index: int) -> int:
    """An ImageNet class -> the model's class index, refused readably when it has none."""
    i = imagenet_index - class_offset(G)
    if not 0 <= i < G.num_classes:
        if is_sngan(G):
            names = imagenet_names()
            raise UserError(f"{imagenet_index}: {names[imagenet_index]} is not one of this SNGAN's "
                            f"classes: it knows ImageNet's dogs and cats, {class_offset(G)} "
                            f"({names[class_offset(G)]}) to {class_offset(G) + G.num_classes - 1}.")
        raise UserError(f"Class {imagenet_index} does not exist in this model ({G.num_classes} classes).")
    return i


def one_hot(index: int, num_classes: int) -> torch.Tensor:
    if not 0 <= index < num_classes:
        raise UserError(f"Class {index} does not exist in this model ({num_classes} classes).")
    v = torch.zeros(1, num_classes)
    v[0, index] = 1
    return v


def class_vector(G, imagenet_index: int) -> torch.Tensor:
    """The one-hot class vector [1, num_classes] of an ImageNet class in model G."""
    return one_hot(model_class(G, imagenet_index), G.num_classes)
