"""The README's benchmark table is generated from the recorded run, not typed by hand."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import readme_table  # noqa: E402

RESULTS = ROOT / "benchmarks" / "reference" / "cpu.json"


def _row(workload, candidate, value, target, passed, gate=True, seconds=0.5, note=""):
    return {
        "workload": workload,
        "candidate": candidate,
        "median_s": seconds,
        "value": value,
        "target": target,
        "passed": passed,
        "gate": gate,
        "note": note,
    }


def test_readme_table_is_the_rendered_reference_run():
    readme = (ROOT / "docs" / "guides" / "benchmarks.md").read_text(encoding="utf-8")
    block = re.search(
        re.escape(readme_table.START) + r"\n(.*?)\n" + re.escape(readme_table.END), readme, re.S
    )
    assert block, "docs/guides/benchmarks.md lost its benchmark markers"
    assert block.group(1) == readme_table.render(json.loads(RESULTS.read_text("utf-8")))


def test_render_keeps_gated_targets_marks_failures_and_names_the_machine():
    results = {
        "repeats": 5,
        "machine": {"cpu": "Test CPU", "cores": 2, "threads": 2, "torch": "9.9", "device": "cpu"},
        "rows": [
            _row("w", "cnnvis", 1.2, "cnnvis/fb <= 1.5", True),
            _row("w", "cnnvis", 2.0, "cnnvis/fb-input <= 1.5", False, gate=False),
            _row("w", "agree cnnvis~peer", 0.99991, "min r >= 0.999", True, seconds=None),
            _row("w", "agree cnnvis~other", 0.99995, "min r >= 0.999", True, seconds=None),
            _row("v", "cnnvis", 0.9, "peer/cnnvis >= 1.5", False),
            _row("v", "agree cnnvis~reference AUC", 3.6e-9, "max |dAUC|/AUC <= 0.0001", True),
            _row("v", "fb", None, None, None),
        ],
    }
    lines = readme_table.render(results).splitlines()
    body = [line for line in lines if line.startswith("| `")]
    assert body == [
        "| `w` | 0.500 | 1.2 | cnnvis/fb <= 1.5 | pass | 0.9999 |",
        "| `v` | 0.500 | 0.9 | peer/cnnvis >= 1.5 | **FAIL** | - |",
        "| `v` | 0.500 | 3.6e-09 | max \\|dAUC\\|/AUC <= 0.0001 | pass | - |",
    ]
    summary = lines[-1]
    assert summary.startswith("4/5 gated targets pass")
    assert "Test CPU, 2 cores, 2 torch threads" in summary and "median of 5 repeats" in summary


def test_write_readme_replaces_only_between_the_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{readme_table.START}\nold\n{readme_table.END}\nafter\n")
    readme_table.write_readme("new table", readme)
    assert (
        readme.read_text()
        == f"before\n{readme_table.START}\nnew table\n{readme_table.END}\nafter\n"
    )


def test_cpu_time_row_takes_ratios_of_cpu_medians_and_the_faster_of_several():
    from benchmarks.common import cpu_time_row
    from benchmarks.timing import Timing

    timings = {
        "cnnvis": Timing("cnnvis", wall=[9.0] * 3, cpu=[2.0, 3.0, 4.0]),
        "torchcam": Timing("torchcam", wall=[1.0] * 3, cpu=[6.0, 6.0, 6.0]),
        "grad-cam": Timing("grad-cam", wall=[1.0] * 3, cpu=[4.5, 4.5, 9.0]),
    }
    row = cpu_time_row("w", timings, "min(torchcam,grad-cam)/cnnvis", ">=", 1.5)
    assert (row.seconds, row.value, row.passed, row.gate) == (3.0, 1.5, True, False)
    row = cpu_time_row("w", timings, "cnnvis/torchcam", "<=", 0.4)
    assert row.value == 0.5 and row.passed is False


def test_rows_of_a_workload_run_in_a_fresh_process_come_back_unchanged():
    from benchmarks.common import Row, Target
    from benchmarks.run import _row
    from benchmarks.workloads import discover

    rows = [
        Row("w", "cnnvis", 1.25, 0.8, Target("throughput ray/bare", ">=", 0.6), note="n"),
        Row("w", "cold", 2.0, 0.5, Target("a/b", "<=", 1.05), gate=False),
        Row("w", "bare", 0.5),
    ]
    for row in rows:
        back = _row(json.loads(json.dumps(row.as_dict())))
        assert back == row and back.passed == row.passed
    assert discover()["batch-resnet50"].fresh_process
