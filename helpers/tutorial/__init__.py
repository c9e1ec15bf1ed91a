"""What the notebooks open with and teach by: the setup cell's ``setup()`` and pair choice (``notebook``), the
exercises with their checks (``exercises``), and the live training view (``live_view``).
"""

from .notebook import setup

__all__ = ["setup"]
