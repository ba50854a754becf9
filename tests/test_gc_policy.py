"""The collector policy of the serving processes (gc_policy): run in a fresh interpreter,
so that this test process keeps its own."""

from __future__ import annotations

import json
import subprocess
import sys

from agent_relay_runtime.gc_policy import YOUNG_THRESHOLD

PROBE = """
import gc, json
before = gc.get_threshold()
from agent_relay_runtime.gc_policy import tune_for_serving
tune_for_serving()
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""


def test_serving_processes_collect_less_often_and_never_rescan_what_startup_made() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    found = json.loads(out)
    assert found["before"][0] < YOUNG_THRESHOLD  # CPython's default (700) is what it replaces
    assert found["after"] == [YOUNG_THRESHOLD, 10, 10]
    assert found["frozen"] > 1000  # the modules, classes and functions imported so far
