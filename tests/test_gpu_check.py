"""The device check's CPU smoke run: the same code as on a GPU, at tiny sizes, so that it cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_cpu_smoke_writes_its_report():
    done = subprocess.run(["bash", "scripts/gpu_check.sh", "--cpu-smoke"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"},
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((ROOT / "outputs/gpu_check/cpu-smoke/gpu_check.json").read_text())
    assert result["device"] == "cpu" and result["config"]["num_hidden_layers"] == 4
    names = [row["workload"] for row in result["workloads"]]
    for workload in ("harvest", "training step, 256 latents", "training step, 1,024 latents", "splicing",
                     "latent statistics", "Latent Scaling", "generation"):
        assert any(workload in name for name in names), workload
    for row in result["workloads"]:
        assert row["seconds"] > 0, row
        if "reference_seconds" in row:
            assert row["speedup"] == row["reference_seconds"] / row["seconds"]
    generation = next(row for row in result["workloads"] if row["workload"].startswith("generation"))
    assert generation["same_tokens"]
    assert (ROOT / "outputs/gpu_check/cpu-smoke/gpu_check.md").read_text().count("\n|") == len(names) + 2


def test_gpu_check_refuses_a_report_folder_that_does_not_exist_before_any_work(tmp_path):
    done = subprocess.run([sys.executable, "scripts/gpu_check.py", "--cpu-smoke", "--out", str(tmp_path / "out"),
                           "--report", str(tmp_path / "missing" / "gpu.md")], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0 and "missing" in done.stderr and "does not exist" in done.stderr
    assert not (tmp_path / "out" / "gpu_check.json").exists()
