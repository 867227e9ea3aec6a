"""Collage tab (being split into a package: the whole module is engine.py for now)."""
from demos.collage.engine import *  # noqa: F401,F403  (a step of the split; replaced next)
