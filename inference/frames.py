"""Pictures and clips as bytes: decode inputs, encode PNG/MP4 outputs, thumbnails.

Frames are `numpy` arrays of shape (frames, height, width, 3), dtype uint8, RGB.
MP4s are H.264/yuv420p with the index up front (`+faststart`) so browsers can
start playing before the whole file arrives. PIL and PyAV are imported inside
the functions: the API process imports `inference` without paying for them.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from inference.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

PNG = "image/png"
MP4 = "video/mp4"
THUMBNAIL_SIDE = 256


@dataclass(frozen=True)
class Clip:
    """Decoded video: frames (n, h, w, 3) uint8 RGB, and frames per second."""

    frames: np.ndarray
    fps: float


def read_bytes(value: bytes | Path) -> bytes:
    """Inputs come as bytes or as a local path (a media store's `path_for`)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return Path(value).read_bytes()


def decode_image(value: bytes | Path, mode: str = "RGB") -> Image:
    """Open any Pillow-readable picture, converted to `mode` (RGB, or L for masks)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(read_bytes(value))) as image:
            image.load()
            return image.convert(mode)
    except UnidentifiedImageError as error:
        raise InvalidInputError(f"not a picture: {error}") from None


def encode_png(image: Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def thumbnail_png(image: Image, side: int = THUMBNAIL_SIDE) -> bytes:
    """A PNG no larger than `side` on its longer edge (small inputs stay as they are)."""
    small = image.copy()
    small.thumbnail((side, side))
    return encode_png(small)


def to_uint8_frames(video: np.ndarray) -> np.ndarray:
    """Pipeline output in [0, 1] floats (n, h, w, 3) → uint8 frames."""
    import numpy as np

    return (np.clip(video, 0.0, 1.0) * 255).round().astype(np.uint8)


def resize_frames(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Every frame resized to (width, height); a no-op when it already fits."""
    import numpy as np
    from PIL import Image

    if frames.shape[1] == height and frames.shape[2] == width:
        return frames
    return np.stack(
        [
            np.asarray(Image.fromarray(f).resize((width, height), Image.Resampling.LANCZOS))
            for f in frames
        ]
    )


def encode_mp4(frames: np.ndarray, fps: float) -> bytes:
    """H.264 MP4 of exactly `len(frames)` frames.

    yuv420p halves chroma resolution, so odd sizes are refused rather than
    silently cropped: callers pick even sizes.
    """
    import av

    count, height, width = frames.shape[:3]
    if count == 0:
        raise InvalidInputError("a video needs at least one frame")
    if width % 2 or height % 2:
        raise InvalidInputError(f"video size must be even, got {width}x{height}")
    # faststart rewrites the file to move the index first, which needs a real file.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.mp4"
        with av.open(str(path), mode="w", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": "18", "preset": "veryfast"}
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())  # flush the frames the encoder still holds
        return path.read_bytes()


def decode_video(value: bytes | Path) -> Clip:
    """Every frame of the first video stream, as RGB, with its frame rate."""
    import av
    import numpy as np

    try:
        with av.open(io.BytesIO(read_bytes(value)), mode="r") as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 16)
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    except (av.error.FFmpegError, IndexError) as error:
        raise InvalidInputError(f"not a video: {error}") from None
    if not frames:
        raise InvalidInputError("the video has no frames")
    return Clip(np.stack(frames), fps)


def video_frame_count(value: bytes | Path) -> int:
    """Frames actually decodable (container headers can disagree with the stream)."""
    return len(decode_video(value).frames)


def pick_evenly(frames: np.ndarray, count: int) -> np.ndarray:
    """`count` frames spread evenly over `frames`, always keeping the first and last."""
    import numpy as np

    if count >= len(frames):
        return frames
    if count == 1:
        return frames[:1]
    indices = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return frames[indices]


def crossfade_concat(clips: list[np.ndarray], overlap: int) -> np.ndarray:
    """Concatenate clips; with `overlap` > 0, blend the last/first `overlap` frames.

    The result has `sum(len) - overlap * (len(clips) - 1)` frames.
    """
    import numpy as np

    result = clips[0]
    for clip in clips[1:]:
        k = min(overlap, len(result), len(clip))
        if k == 0:
            result = np.concatenate([result, clip])
            continue
        # Weights run strictly between 0 and 1 so neither clip's frame is dropped outright.
        weights = np.linspace(0, 1, k + 2)[1:-1].reshape(k, 1, 1, 1)
        blended = (1 - weights) * result[-k:] + weights * clip[:k]
        result = np.concatenate([result[:-k], blended.round().astype(np.uint8), clip[k:]])
    return result
