"""A video's frame at a moment, as a small upright JPEG: what the search page shows for a hit."""

from __future__ import annotations

import io

import av
import PIL.Image

from errors import one_line

from .video import VideoDecodeError, local_copy, open_video

# Longest side of a thumbnail in pixels: a results grid shows them at about 240 px, twice that on
# high-density screens would be wasted on the small videos vidx samples at 224 px anyway.
THUMBNAIL_SIDE = 320
JPEG_QUALITY = 85


def frame_at(path: str, seconds: float) -> PIL.Image.Image:
    """The frame shown `seconds` after the video's first frame (the last one starting at or before
    it), turned upright as players turn it. Decodes from the keyframe before that moment, after
    refusing what is not a video (empty, an image, oversized...)."""
    try:
        with open_video(path) as (container, stream):
            start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
            target = start + max(seconds, 0.0)
            if seconds > 0:
                container.seek(int(target / stream.time_base), stream=stream, backward=True)
            shown = None
            for frame in container.decode(stream):
                if shown is not None and frame.time is not None and frame.time > target:
                    break
                shown = frame
            if shown is None:
                raise VideoDecodeError("no decodable video frame")
            image = shown.to_image()
            return image.rotate(shown.rotation, expand=True) if shown.rotation % 360 else image
    except VideoDecodeError:
        raise
    except (av.FFmpegError, ValueError, IndexError) as e:
        raise VideoDecodeError(f"not a readable video: {one_line(e)}") from e


def thumbnail_jpeg(uri: str, seconds: float, side: int = THUMBNAIL_SIDE) -> bytes:
    """JPEG bytes of the frame at `seconds` of the video at `uri` (a path or fsspec URL), its
    longest side at most `side` pixels. Raises VideoDecodeError."""
    with local_copy(uri) as path:
        image = frame_at(path, seconds)
    image.thumbnail((side, side), PIL.Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
