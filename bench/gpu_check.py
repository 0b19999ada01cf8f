"""One prepared GPU check: encoder, decoding, the decode -> encode pipeline and query latency, timed.

Usage: python bench/gpu_check.py [--cpu] DIR      (bench/gpu_check.sh runs it; read that first)

Writes DIR/gpu_check.json (every key of SCHEMA, each step's seconds and status) and
DIR/gpu_check.md (a short table), after every step, so a run cut short keeps what it measured. A step
that fails is recorded ("failed: <one line>", its traceback on stderr) and the rest go on; a step
past its budget is stopped the same way. --cpu rehearses the same code paths with tiny sizes; what
only a GPU gives (nvidia-smi, GPU memory and utilisation, NVDEC) is then "skipped: no GPU".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from errors import one_line  # noqa: E402
from realistic_media import MediaSpec  # noqa: E402

logger = logging.getLogger("gpu_check")


class StepKeys(NamedTuple):
    measured: tuple[str, ...]  # always measured when the step's status is "ok"
    gpu: tuple[str, ...] = ()  # measured only on a GPU: None unless the step's gpu_status is "ok"

    def all(self) -> tuple[str, ...]:
        return ("status", "seconds", *self.measured, *(("gpu_status", *self.gpu) if self.gpu else ()))


# The one description of what a run writes, GPU or --cpu: the writer fills every key, the test checks them.
SCHEMA = {
    "facts": StepKeys(("python", "torch", "torch_cuda", "open_clip", "av", "cores", "device"),
                      ("gpu_name", "gpu_driver", "gpu_memory_mib")),
    "media": StepKeys(("name", "content", "frames", "mbit_per_s")),
    "encoder": StepKeys(("model", "precision", "clip_frames", "batch_clips", "batch_frames", "frames_per_s",
                         "best_batch_clips", "best_frames_per_s", "best_videos_per_s", "captions_per_s"),
                        ("gpu_peak_memory_mib",)),
    "query": StepKeys(("batch_1_ms", "batch_32_ms")),
    "decode": StepKeys(("workers", "exact_videos", "exact_videos_per_s", "exact_cpu_s_per_video",
                        "keyframe_videos", "keyframe_videos_per_s", "keyframe_cpu_s_per_video")),
    "index_pipeline": StepKeys(("workers", "batch_clips", "exact_videos", "exact_videos_per_s", "keyframe_videos",
                                "keyframe_videos_per_s"),
                               ("gpu_util_exact_pct", "gpu_util_keyframe_pct")),
    "hw_decode": StepKeys(("frames", "sampled_frames", "cpu_whole_1core_frames_per_s", "cpu_whole_threads_frames_per_s",
                           "cpu_sampled_1core_frames_per_s"),
                          ("gpu_decoder", "gpu_whole_frames_per_s", "gpu_sampled_frames_per_s")),
    "decode_cores_per_gpu": StepKeys(("encoder_videos_per_s", "exact", "keyframe")),
}


@dataclasses.dataclass(frozen=True)
class Sizes:
    model: str  # "vitb32": CLIP2Video of the released ViT-B/32 geometry, random weights; "tiny": encoders' test model
    media: MediaSpec  # the one file every decoding step reads
    image_size: int  # the model's input side, which frames are decoded to (decoding needs no model)
    batch_frames: tuple[int, ...]  # encoder batches, in frames (whole clips of 12)
    captions: int  # batch of the captions/s figure
    figure_seconds: float  # each timed loop runs at least this long, after a warm-up
    decode_seconds: float  # each mode of the decode and pipeline steps aims at this wall time
    workers: int  # decode processes, one per core
    budgets: dict  # step -> seconds before it is stopped


# The GPU run: 720p like the decoding benchmarks, the released encoder's geometry, every core decoding.
# Budgets add up to 405 s, so the run with its wheel install stays under 8 minutes.
GPU = Sizes("vitb32", MediaSpec(720, 60, 250), 224, (64, 128, 256, 512, 1024), 256, 2.0, 15.0, os.cpu_count() or 1,
            {"facts": 15, "media": 60, "encoder": 100, "query": 20, "decode": 80, "index_pipeline": 80,
             "hw_decode": 45, "decode_cores_per_gpu": 5})
# The rehearsal: the same steps in about a minute on 2 cores.
CPU = dataclasses.replace(GPU, model="tiny", media=MediaSpec(144, 4, 30), image_size=32, batch_frames=(24, 48),
                          captions=32, figure_seconds=0.3, decode_seconds=2.0, workers=2)


class StepTimeout(Exception):
    pass


def _over_budget(signum, frame):
    raise StepTimeout("over its time budget")


def run_step(name: str, measure: Callable[[], dict], budget_s: int) -> dict:
    """Every key of the step, measured or None, with its status and seconds; never raises."""
    started = time.perf_counter()
    signal.signal(signal.SIGALRM, _over_budget)
    signal.alarm(budget_s)
    try:
        measured, status = measure(), "ok"
    except Exception as e:  # a failed step is a record, not the end of the run
        logger.exception("step %s failed", name)
        measured, status = {}, f"failed: {one_line(e)}"
    finally:
        signal.alarm(0)
    return {**dict.fromkeys(SCHEMA[name].all()), **measured, "status": status,
            "seconds": round(time.perf_counter() - started, 2)}


def schema_problems(result: dict) -> list[str]:
    """What a result lacks against SCHEMA: missing keys, and figures absent or not positive where
    their status says they were measured."""
    problems = []
    for step, keys in SCHEMA.items():
        row = result["steps"].get(step)
        if row is None or set(keys.all()) - set(row):
            problems.append(f"{step}: missing {sorted(set(keys.all()) - set(row or {}))}")
            continue
        wanted = (keys.measured if row["status"] == "ok" else ()) + (keys.gpu if row.get("gpu_status") == "ok" else ())
        problems += [f"{step}.{key}: {row[key]!r}" for key in wanted if not _measured(row[key])]
    return problems


def _measured(value) -> bool:
    if isinstance(value, list):
        return bool(value) and all(map(_measured, value))
    if isinstance(value, (int, float)):
        return value > 0 and math.isfinite(value)
    return isinstance(value, str) and bool(value)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "/".join(map(_cell, value))
    return str(value)


def table(result: dict) -> str:
    """A short Markdown table: one row per step, its figures as key=value."""
    lines = [f"gpu_check ({result['mode']}), {result['seconds']} s in all", "",
             "| step | status | s | figures |", "|---|---|---|---|"]
    for step, row in result["steps"].items():
        figures = "; ".join(f"{k}={_cell(v)}" for k, v in row.items()
                            if k not in ("status", "seconds") and v is not None)
        lines.append(f"| {step} | {row['status']} | {row['seconds']} | {figures} |")
    return "\n".join(lines) + "\n"


def write(out: Path, result: dict) -> None:
    (out / "gpu_check.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "gpu_check.md").write_text(table(result))


def steps(context) -> dict[str, Callable[[], dict]]:
    """Each step in the order it runs (the derived one last)."""
    import gpu_decode
    import gpu_steps

    return {"facts": lambda: gpu_steps.facts(context), "media": lambda: gpu_steps.media(context),
            "encoder": lambda: gpu_steps.encoder(context), "query": lambda: gpu_steps.query(context),
            "decode": lambda: gpu_decode.decode(context), "index_pipeline": lambda: gpu_decode.index_pipeline(context),
            "hw_decode": lambda: gpu_decode.hw_decode(context),
            "decode_cores_per_gpu": lambda: gpu_decode.decode_cores_per_gpu(context)}


def run(out: Path, cpu: bool) -> dict:
    # Imported here: torch, open_clip and PyAV load only for a run, not for the test reading SCHEMA.
    import gpu_steps

    sizes = CPU if cpu else GPU
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = {"mode": "cpu" if cpu else "gpu", "sizes": dataclasses.asdict(sizes), "seconds": 0.0, "steps": {}}
    with gpu_steps.Context(sizes, on_gpu=not cpu) as context:
        for name, measure in steps(context).items():
            logger.info("step %s", name)
            result["steps"][name] = context.results[name] = run_step(name, measure, sizes.budgets[name])
            result["seconds"] = round(time.perf_counter() - started, 1)
            write(out, result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--cpu", action="store_true", help="rehearse on this CPU with tiny sizes")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    result = run(args.out, args.cpu)
    print(table(result))
    for problem in schema_problems(result):
        print(f"not measured: {problem}")


if __name__ == "__main__":
    main()
