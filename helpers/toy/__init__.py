"""The toy world, as data: the stdlib corpus and its questions (``corpus``), the four planted organisms
(``organisms``), and where the shipped toy pair and organisms live (``shipped``).

Nothing here trains or runs a model; ``helpers.builders.toy_pair`` builds the shipped weights from this data.
"""

from .shipped import build_report, organisms_path, toy_pair_path

__all__ = ["build_report", "organisms_path", "toy_pair_path"]
