"""A live view of training: the curves redrawn in place while ``Trainer.train`` runs.

In Jupyter and Colab (an IPython kernel) the figure of ``figures.training_curves`` is displayed once and
updated in place, at most every ``min_seconds`` and always at the last step, so the executed notebook keeps
the final curves; anywhere else (a script, a terminal) each update is one line of text. Drawing is kept to
about a tenth of the training time: after an update that took ``u`` seconds the next waits at least ``10 u``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from ..analysis.figures import training_curves
from ..validation import positive_int, real


def in_notebook() -> bool:
    """Whether this runs in an IPython kernel (Jupyter, Colab, a notebook under test), not a terminal."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def roles_in(record: dict) -> tuple[str, ...]:
    """The model roles a training record reports explained variance for (``base``, ``chat``; ``input`` for a
    one-model dictionary)."""
    return tuple(key.removeprefix("explained_variance_") for key in record if key.startswith("explained_variance_"))


class LiveTrainingView:
    """Pass as ``Trainer.train(on_log=LiveTrainingView(total_steps))``; called with each logged record and the
    history so far (see ``Trainer.history``). ``roles`` default to those the records report."""

    def __init__(self, total_steps: int, roles: Sequence[str] | None = None, min_seconds: float = 2.0,
                 notebook: bool | None = None):
        positive_int("total_steps", total_steps)
        real("min_seconds", min_seconds, 0)
        if roles is not None and (isinstance(roles, str) or not all(isinstance(r, str) for r in roles)):
            raise ValueError(f"roles must be a list of model roles such as ['base', 'chat'], got {roles!r}")
        self.total_steps, self.roles, self.min_seconds = total_steps, tuple(roles or ()), min_seconds
        self.notebook = in_notebook() if notebook is None else notebook
        self._handle = None
        self._next_update = -float("inf")
        self.updates = 0

    def line(self, record: dict) -> str:
        """One record as text: step, loss, L0, explained variance per model, dead fraction."""
        fve = " ".join(f"{role} {record[f'explained_variance_{role}']:.3f}" for role in self.roles_of(record))
        return (f"step {record['step']:>6}/{self.total_steps} | loss {record['loss']:.4g} | L0 {record['l0']:.1f} | "
                f"FVE {fve} | dead {record['dead_fraction']:.1%}")

    def roles_of(self, record: dict) -> tuple[str, ...]:
        """The roles given, where the record reports them all; else the record's own."""
        reported = roles_in(record)
        return self.roles if self.roles and set(self.roles) <= set(reported) else reported

    @staticmethod
    def mime_bundle(figure) -> dict:
        """The figure as plotly's JSON (JupyterLab) and as HTML loading plotly.js from its CDN (Colab, classic
        Jupyter, rendered pages), for one display that updates in place: plotly's own display hook would
        add a new output, and its notebook renderer a new script, on every update."""
        import plotly.io as pio

        return {"application/vnd.plotly.v1+json": json.loads(pio.to_json(figure, validate=False)),
                "text/html": pio.to_html(figure, include_plotlyjs="cdn", full_html=False)}

    def __call__(self, record: dict, history: list[dict]) -> None:
        last = record["step"] >= self.total_steps
        started = time.monotonic()
        if not last and started < self._next_update:
            return
        self.updates += 1
        try:
            self._draw(record, history)
        finally:
            self._next_update = time.monotonic() + max(self.min_seconds, 10 * (time.monotonic() - started))

    def _draw(self, record: dict, history: list[dict]) -> None:
        if not self.notebook:
            print(self.line(record), flush=True)
            return
        from IPython.display import display

        bundle = self.mime_bundle(training_curves(history, self.roles_of(record), title=self.line(record)))
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)
