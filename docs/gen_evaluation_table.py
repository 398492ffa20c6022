"""The evaluation outcomes of the guide docs/guides/evaluating.md, generated from a recorded run (`docs/evaluation_run.json`).

python docs/gen_evaluation_table.py --run      # evaluate again and record the run (minutes)
python docs/gen_evaluation_table.py            # print the README block from the recording
python docs/gen_evaluation_table.py --write    # update docs/guides/evaluating.md between its markers

The run: the offline default model (EfficientNet-Lite0), eight sample photos, Grad-CAM,
gradient and guided backprop, the thorough protocol at 16 deletion/insertion steps (the
random baseline the mean of 8 draws), no ROAD; localisation on the five photos with bundled
boxes. The same settings and seed give the same numbers on any CPU.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "docs" / "guides" / "evaluating.md"
RECORDING = ROOT / "docs" / "evaluation_run.json"
START, END = "<!-- evaluation:start -->", "<!-- evaluation:end -->"
IMAGES = (
    "sample:cat", "sample:coffee", "sample:rocket", "sample:motorcycle", "sample:camera",
    "sample:astronaut", "sample:motorcycle_right", "sample:clock",
)  # fmt: skip
METHODS = ("grad-cam", "gradient", "guided-backprop")
METRICS = ("deletion", "insertion", "average-drop", "increase", "localisation")
STEPS = 16
COMMAND = (
    "cnnvis evaluate sample:cat sample:coffee sample:rocket sample:motorcycle sample:camera \\\n"
    "    sample:astronaut sample:motorcycle_right sample:clock --thorough --steps 16 \\\n"
    "    --metrics deletion,insertion,average-drop,increase,localisation"
)
COLUMNS = (
    ("deletion", "deletion ↓"),
    ("insertion", "insertion ↑"),
    ("average-drop", "average drop ↓"),
    ("pointing-game", "pointing game ↑"),
    ("energy-pointing-game", "energy pointing ↑"),
)
SHOWN_BASELINES = ("random", "centre", "edges")


def record(path: Path = RECORDING) -> dict[str, Any]:
    """Run the evaluation and write its JSON summary (`evaluate.saving.to_json`) to `path`."""
    import cnnvis
    from cnnvis.evaluate.saving import to_json

    ev = cnnvis.evaluate(
        cnnvis.load_model(),
        list(IMAGES),
        list(METHODS),
        list(METRICS),
        protocol="thorough",
        steps=STEPS,
    )
    data = to_json(ev)
    data["command"] = COMMAND
    path.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")
    return data


def _cell(interval: dict[str, Any] | None) -> str:
    if interval is None:
        return "-"
    low, high = interval["ci_low"], interval["ci_high"]
    if low is None or high is None:
        return f"{interval['mean']:.3f}"
    return f"{interval['mean']:.3f} ± {(high - low) / 2:.3f}"


def block(data: dict[str, Any]) -> str:
    """The README block: the command, the mean ± CI table, the verdicts and the note."""
    intervals = data["intervals"]
    shown = [*data["methods"], *[b for b in SHOWN_BASELINES if b in data["baselines"]]]
    shown += [f"reversed:{m}" for m in data["methods"] if m == "grad-cam"]
    counts = {
        metric: max((i[metric]["images"] for i in intervals.values() if metric in i), default=0)
        for metric, _ in COLUMNS
    }
    heads = [f"{head} ({counts[m]})" for m, head in COLUMNS]
    lines = [
        "```bash",
        data["command"],
        "```",
        "",
        "| map | " + " | ".join(heads) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for name in shown:
        cells = [_cell(intervals.get(name, {}).get(metric)) for metric, _ in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Mean ± half the 95% bootstrap interval over the images (their number in brackets). "
        "Verdicts: the paired difference method - baseline over the images, its 95% bootstrap "
        "interval, the Wilcoxon signed-rank p and the matched-pairs rank-biserial r "
        f"(alpha {data['statistics']['alpha']:g} per comparison):",
        "",
    ]
    for v in data["verdicts"]:
        if v["verdict"] == "no evidence" or v["baseline"] not in (
            *SHOWN_BASELINES,
            f"reversed:{v['method']}",
        ):
            continue
        lines.append(
            f"- {v['method']} **{v['verdict']}** than {v['baseline']} on {v['metric']}: "
            f"{v['mean']:+.3f} [{v['ci_low']:+.3f}, {v['ci_high']:+.3f}], p = {v['p']:.3g}, "
            f"r = {v['effect']:+.2f}"
        )
    quiet = [v for v in data["verdicts"] if v["verdict"] == "no evidence"]
    lines.append(f"- no evidence either way in {len(quiet)} of {len(data['verdicts'])} comparisons")
    if data.get("verdict_note"):
        lines += ["", data["verdict_note"]]
    return "\n".join(lines)


def update_readme(data: dict[str, Any], path: Path = README) -> bool:
    """Replace the block between the markers; True when the file changed."""
    text = path.read_text()
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    new = pattern.sub(lambda _: f"{START}\n{block(data)}\n{END}", text)
    if new != text:
        path.write_text(new)
    return new != text


def load(path: Path = RECORDING) -> dict[str, Any]:
    """The recorded run."""
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def main(argv: list[str]) -> int:
    data = record() if "--run" in argv else load()
    if "--write" in argv:
        print(
            "evaluating.md updated" if update_readme(data) else "evaluating.md already up to date"
        )
    else:
        print(block(data))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
