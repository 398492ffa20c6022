"""Run the benchmarks: `python -m benchmarks.run [--quick] [--only NAME] [--repeats N]
[--threads T] [--device cpu|cuda] [--baseline fb|fb-input] [--json FILE] [--no-fail] [--list]`.

Prints one table (workload, candidate, median seconds, value, target, result), writes the same
rows with every timing sample and a description of the machine to JSON, and exits 1 when a gated
target is missed (0 with --no-fail). See benchmarks/README.md for the definitions.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from .common import Context, Row, Target, log
from .timing import set_threads
from .workloads import discover

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the fast subset (< 3 min, 2 cores)")
    parser.add_argument("--only", help="workloads to run: comma-separated names or globs")
    parser.add_argument("--repeats", type=int, help="timed repeats per candidate (3 quick, 5 full)")
    parser.add_argument("--threads", type=int, default=_cores(), help="torch intra-op threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument(
        "--baseline",
        choices=("fb", "fb-input"),
        default="fb",
        help="the forward+backward that gates 'x one forward+backward' targets (README)",
    )
    parser.add_argument("--json", type=Path, help="where to write results (default under results/)")
    parser.add_argument("--no-fail", action="store_true", help="report only; always exit 0")
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    return parser.parse_args(argv)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def select(workloads: dict, only: str | None, quick: bool) -> list:
    if only:
        patterns = [p.strip() for p in only.split(",") if p.strip()]
        chosen = [w for n, w in workloads.items() if any(fnmatch.fnmatch(n, p) for p in patterns)]
        if not chosen:
            raise SystemExit(f"no workload matches {only!r}; try --list")
        return chosen
    return [w for w in workloads.values() if w.quick or not quick]


def machine(ctx: Context) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": _cores(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(ctx.device),
        "load_average": _load(),
        "git_commit": _git_commit(),
    }
    for package, distribution in _PACKAGES.items():
        try:
            info[package] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            info[package] = None
    if ctx.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(ctx.device)
    return info


# the package versions recorded with every run: import name -> distribution name
_PACKAGES = {
    "torchvision": "torchvision",
    "captum": "captum",
    "torchcam": "torchcam",
    "pytorch_grad_cam": "grad-cam",
    "cnnvis": "cnnvis",
}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        return out.stdout.strip() or None
    except OSError:
        return None


def _fmt_seconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.4f}" if seconds < 10 else f"{seconds:.2f}"


def _fmt_value(row: Row) -> str:
    if row.value is None:
        return "-"
    if row.candidate.startswith("agree"):
        return f"{row.value:.6f}"
    return f"{row.value:.3f}"


def _result(row: Row) -> str:
    passed = row.passed
    if passed is None:
        return ""
    text = "PASS" if passed else "FAIL"
    return text if row.gate else f"({text.lower()})"


def table(rows: list[Row]) -> str:
    header = ("workload", "candidate", "median s", "value", "target", "result", "note")
    lines = [
        (
            r.workload,
            r.candidate,
            _fmt_seconds(r.seconds),
            _fmt_value(r),
            str(r.target) if r.target else "",
            _result(r),
            r.note,
        )
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines, strict=True)]
    widths[-1] = 0  # the note is left unpadded
    out = []
    for i, line in enumerate([header, *lines]):
        out.append("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if i == 0:
            out.append("  ".join("-" * max(w, 4) for w in widths).rstrip())
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workloads = discover()
    if args.list:
        for w in workloads.values():
            print(f"{w.name:<22} {'quick' if w.quick else 'full '}  {w.summary}")
        return 0
    threads = set_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda given, but torch sees no CUDA device")
    repeats = args.repeats or (3 if args.quick else 5)
    ctx = Context(args.quick, repeats, device, threads, args.baseline)
    chosen = select(workloads, args.only, args.quick)
    info = machine(ctx)
    log(
        f"cnnvis benchmarks ({'quick' if args.quick else 'full'}): {len(chosen)} workloads, "
        f"{repeats} repeats, torch {torch.__version__}, {threads} threads "
        f"(interop {torch.get_num_interop_threads()}), {info['cores']} cores ({info['cpu']}), "
        f"device {device}, load average {info['load_average']}, baseline {args.baseline}"
    )
    _warn_if_busy(info, threads)
    start = time.perf_counter()
    rows: list[Row] = []
    durations: dict[str, float] = {}
    for workload in chosen:
        log(f"[{workload.name}] {workload.summary}")
        t0 = time.perf_counter()
        try:
            if workload.fresh_process and len(chosen) > 1:
                rows += _in_a_fresh_process(workload.name, args, repeats, threads, ctx)
            else:
                rows += workload.run(ctx)
        except Exception as exc:
            traceback.print_exc()
            target = Target("runs", ">=", 1)
            rows.append(Row(workload.name, "error", None, 0.0, target, note=repr(exc)[:120]))
        durations[workload.name] = time.perf_counter() - t0
        log(f"[{workload.name}] {durations[workload.name]:.1f} s")
    elapsed = time.perf_counter() - start
    info["load_average_end"] = _load()

    print()
    print(table(rows))
    gated = [r for r in rows if r.gate and r.passed is not None]
    failed = [r for r in gated if not r.passed]
    print()
    print(
        f"{len(gated) - len(failed)}/{len(gated)} gated targets pass; {elapsed:.0f} s in all; "
        f"load average {info['load_average']} -> {info['load_average_end']} on {info['cores']} "
        "cores"
    )
    for r in failed:
        print(f"  FAIL {r.workload} {r.candidate}: {r.target} (got {_fmt_value(r)})")

    path = (
        args.json or ROOT / "benchmarks" / "results" / f"{'quick' if args.quick else 'full'}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": info,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "repeats": repeats,
        "elapsed_s": elapsed,
        "workload_s": durations,
        "rows": [r.as_dict() for r in rows],
        "timings": {
            **{w: {name: t.as_dict() for name, t in ts.items()} for w, ts in ctx.timings.items()},
            **ctx.extra.pop("child_timings", {}),
        },
        "extra": ctx.extra,
    }
    path.write_text(json.dumps(payload, indent=2, default=str))
    print(f"results written to {path}")
    return 0 if args.no_fail or not failed else 1


def _in_a_fresh_process(
    name: str, args: argparse.Namespace, repeats: int, threads: int, ctx: Context
) -> list[Row]:
    """Run one workload as `python -m benchmarks.run --only NAME` and take its rows back.

    A long run's process has built and freed many models by the time a late workload runs, and
    glibc then serves its large tensors with more page faults than a new process does. Seen:
    the bare explain loop of `batch-resnet50` (256 images) took 6.8 s and 0.73 M minor faults
    in a new process, 8.7 s and 2.5 M after VGG16, DenseNet-121 and ResNet-50 had been built,
    run and freed in it, and 10.6 s late in a full run. That slows what runs in this process
    and not what runs in Ray's, so such workloads run alone.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        command = [
            sys.executable, "-m", "benchmarks.run", "--only", name, "--repeats", str(repeats),
            "--threads", str(threads), "--device", args.device, "--baseline", args.baseline,
            "--json", str(out), "--no-fail", *(["--quick"] if args.quick else []),
        ]  # fmt: skip
        log(f"  (in a fresh process: {' '.join(command[1:])})")
        subprocess.run(command, cwd=ROOT, check=True)
        child = json.loads(out.read_text())
    ctx.extra.setdefault("child_timings", {}).update(child["timings"])
    for key, value in child["extra"].items():
        ctx.extra.setdefault(key, value)
    return [_row(r) for r in child["rows"]]


def _row(data: dict[str, Any]) -> Row:
    """A Row back from its JSON form."""
    target = None
    if data.get("target"):
        formula, op, threshold = data["target"].rsplit(" ", 2)
        target = Target(formula, op, float(threshold))
    return Row(
        data["workload"],
        data["candidate"],
        data.get("median_s"),
        data.get("value"),
        target,
        data.get("gate", True),
        data.get("note", ""),
    )


def _warn_if_busy(info: dict[str, Any], threads: int) -> None:
    load = info.get("load_average")
    if load and load[0] > max(info["cores"] - threads, 0) + 0.5:
        log(
            f"warning: load average {load[0]} on {info['cores']} cores: other processes share "
            "the CPU, so timings are noisy (interleaving spreads the noise over all candidates)"
        )


if __name__ == "__main__":
    sys.exit(main())
