"""Procedural sample videos with captions: coloured shapes moving in a direction on a background.

The media of the demo and of the `demo` model's training (`vidx synth`, `vidx demo`): DIR/videos/*.mp4
and DIR/manifest.jsonl (uri, video_id, captions, shape, colour, direction, background). Some
captions name only the direction, so order-blind models cannot solve them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

logger = logging.getLogger(__name__)

COLOURS = {"red": (220, 30, 30), "green": (30, 190, 40), "blue": (40, 70, 230), "yellow": (240, 220, 30),
           "white": (245, 245, 245)}
BACKGROUNDS = {"black": (10, 10, 10), "grey": (110, 110, 110), "navy": (15, 20, 70), "olive": (70, 80, 20)}
SHAPES = ("circle", "square", "triangle")
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}

SIZE = 96  # pixels; small files, still enough for a 224 px CLIP after upscaling
FPS = 10
SECONDS = 4.8  # 24 samples on the 5 fps grid: all 12 frame slots filled at feature_framerate 2


@dataclass(frozen=True)
class Scene:
    video_id: str
    shape: str
    colour: str
    direction: str
    background: str

    def captions(self) -> list[str]:
        return [
            f"a {self.colour} {self.shape} moves {_direction_phrase(self.direction)}",
            f"something moves {_direction_phrase(self.direction)}",
        ]


def _direction_phrase(direction: str) -> str:
    return {"left": "to the left", "right": "to the right", "up": "up", "down": "down"}[direction]


def _shape_mask(shape: str, cx: float, cy: float, radius: float) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    if shape == "circle":
        return (x - cx) ** 2 + (y - cy) ** 2 <= radius**2
    if shape == "square":
        return (abs(x - cx) <= radius) & (abs(y - cy) <= radius)
    # triangle pointing up: inside when below the two slanted edges and above the base
    return (y <= cy + radius) & (y >= cy - radius + 2 * abs(x - cx))


def render_frames(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """(frames, SIZE, SIZE, 3) uint8: the shape crosses most of the frame in its direction."""
    count = int(SECONDS * FPS)
    dx, dy = DIRECTIONS[scene.direction]
    radius = SIZE * rng.uniform(0.12, 0.18)
    travel = SIZE - 2.5 * radius
    offset = rng.uniform(-0.15, 0.15) * SIZE  # across the motion axis
    background = np.array(BACKGROUNDS[scene.background], np.int16)
    noise = rng.integers(-12, 13, (SIZE, SIZE, 3))
    frames = np.empty((count, SIZE, SIZE, 3), np.uint8)
    for i in range(count):
        progress = i / (count - 1) - 0.5  # -0.5 .. 0.5
        cx = SIZE / 2 + dx * progress * travel + (offset if dy else 0)
        cy = SIZE / 2 + dy * progress * travel + (offset if dx else 0)
        image = np.clip(background + noise, 0, 255).astype(np.uint8)
        image[_shape_mask(scene.shape, cx, cy, radius)] = COLOURS[scene.colour]
        frames[i] = image
    return frames


def write_mp4(path: Path, frames: np.ndarray, fps: int = FPS, gop: int | None = None) -> None:
    """H.264 at x264's defaults; gop: a keyframe every `gop` frames exactly (no scene-cut ones)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if gop:
            stream.options = {"x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        for pixels in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def random_scenes(n: int, seed: int) -> list[Scene]:
    rng = np.random.default_rng(seed)
    pick = lambda options: str(rng.choice(list(options)))  # noqa: E731
    return [
        Scene(f"synth_{seed}_{i:05d}", pick(SHAPES), pick(COLOURS), pick(DIRECTIONS), pick(BACKGROUNDS))
        for i in range(n)
    ]


def write_samples(out: str | Path, n: int = 16, seed: int = 0, gop: int | None = None) -> Path:
    """Write n videos and their manifest under `out`; returns the manifest path. gop: keyframe
    interval in frames (default x264's 250: one keyframe per 48-frame clip)."""
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 1])
    rows = []
    for scene in random_scenes(n, seed):
        path = out / "videos" / f"{scene.video_id}.mp4"
        write_mp4(path, render_frames(scene, rng), gop=gop)
        rows.append({"uri": str(path.resolve()), **asdict(scene), "captions": scene.captions()})
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    logger.info("wrote %d videos and %s", n, manifest)
    return manifest
