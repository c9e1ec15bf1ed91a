"""Every public function and the command line, tried with bad arguments (``scripts/probe_bad_input.py``): each
probe must get a clear error naming what was wrong, at the entry point, never a raw error or silence."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import helpers

ROOT = Path(__file__).resolve().parents[1]


def probe_script():
    spec = importlib.util.spec_from_file_location("probe_bad_input", ROOT / "scripts" / "probe_bad_input.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_bad_argument_gets_a_clear_error(tmp_path):
    script = probe_script()
    outcomes = [script.run(probe) for probe in script.probes(tmp_path)]
    unclear = [f"{o.probe.function}({o.probe.argument}={o.probe.bad}): {o.result}" for o in outcomes if not o.passed]
    assert not unclear, "\n".join(unclear)
    assert len(outcomes) >= 100


def test_the_probes_cover_every_public_function():
    """Each callable in helpers.__all__ is probed (exceptions and plain data have no arguments to probe)."""
    import inspect

    source = (ROOT / "scripts" / "probe_bad_input.py").read_text()
    callables = {name for name in helpers.__all__ if callable(getattr(helpers, name))
                 and not (inspect.isclass(getattr(helpers, name)) and issubclass(getattr(helpers, name), Exception))}
    unprobed = {name for name in callables if f'Probe("{name}' not in source}
    assert not unprobed - {"CrossCoderLosses", "Diff", "ModelPair", "Pair", "list_releases"}, sorted(unprobed)
