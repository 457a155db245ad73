"""What an upload's bytes are, decided by decoding them, and its thumbnail.

An image must open with Pillow as one of `IMAGE_FORMATS` (no other decoder is ever
asked: EPS would run Ghostscript), pass `verify()` and then decode fully (`load()`),
with at most `max_pixels` pixels (checked from the header, before any pixel is
decoded: a decompression bomb is refused without being expanded). A video must open
with PyAV as one of `VIDEO_FORMATS`, hold a video stream of at most `max_pixels` per
frame and decode a first frame within `MAX_PACKETS` packets.

The declared content type (the multipart part's) must agree with the bytes: none or
`application/octet-stream` declares nothing; `image/png` for JPEG bytes, or
`image/*` for a video or for bytes that are no image, is refused. The thumbnail is a
WebP of at most `THUMBNAIL_PX` on its long side (an image's own pixels, a video's
first frame), never larger than the original.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import IO, Any

from realtime.errors import MediaTooLargeError, MediaTypeMismatchError, UnsupportedMediaError

THUMBNAIL_PX = 256
MAX_PACKETS = 2000
# Pillow format -> (content type, suffix).
IMAGE_FORMATS = {
    "PNG": ("image/png", ".png"),
    "JPEG": ("image/jpeg", ".jpg"),
    "WEBP": ("image/webp", ".webp"),
    "GIF": ("image/gif", ".gif"),
    "BMP": ("image/bmp", ".bmp"),
    "TIFF": ("image/tiff", ".tiff"),
}
# A PyAV container name holds one of these -> (content type, suffix, declared aliases).
VIDEO_FORMATS = (
    ("mp4", "video/mp4", ".mp4", {"video/mp4", "video/quicktime"}),
    ("webm", "video/webm", ".webm", {"video/webm", "video/x-matroska"}),
    ("avi", "video/x-msvideo", ".avi", {"video/x-msvideo", "video/avi"}),
)
ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "image/x-ms-bmp": "image/bmp",
    "image/x-bmp": "image/bmp",
    "image/tif": "image/tiff",
}
UNDECLARED = {"", "application/octet-stream", "binary/octet-stream"}
KNOWN = (
    "an image Pillow decodes (PNG, JPEG, WebP, GIF, BMP, TIFF) or a video PyAV "
    "decodes (MP4/MOV, WebM/Matroska, AVI)"
)


@dataclass(frozen=True)
class Media:
    """A decoded upload: what it is and its thumbnail (WebP bytes)."""

    kind: str  # "image" | "video"
    content_type: str
    suffix: str
    width: int
    height: int
    thumbnail: bytes


def inspect(file: IO[bytes], declared: str | None, name: str, max_pixels: int) -> Media:
    """The upload in `file` as `Media`, or a 422 naming what is wrong with it."""
    declared_type = (declared or "").split(";")[0].strip().lower()
    declared_type = ALIASES.get(declared_type, declared_type)
    media = _image(file, name, max_pixels)
    if media is None:
        media = _video(file, name, max_pixels)
    if media is None:
        said = f" (declared {declared_type})" if declared_type not in UNDECLARED else ""
        raise UnsupportedMediaError(
            f"the upload {name!r}{said} is not {KNOWN}", declared=declared_type or None
        )
    if declared_type not in UNDECLARED and not _agrees(declared_type, media):
        raise MediaTypeMismatchError(
            f"the upload {name!r} is declared {declared_type} but its bytes are "
            f"{media.content_type} ({media.kind})",
            declared=declared_type,
            detected=media.content_type,
        )
    return media


def _agrees(declared: str, media: Media) -> bool:
    if media.kind == "image":
        return declared == media.content_type
    return any(
        declared in aliases for _, ctype, _, aliases in VIDEO_FORMATS if ctype == media.content_type
    )


def _too_many(name: str, width: int, height: int, max_pixels: int) -> MediaTooLargeError:
    return MediaTooLargeError(
        f"the upload {name!r} is {width}x{height} = {width * height} "
        f"pixels; at most {max_pixels} are accepted",
        width=width,
        height=height,
        max_pixels=max_pixels,
    )


def _image(file: IO[bytes], name: str, max_pixels: int) -> Media | None:
    from PIL import Image, UnidentifiedImageError

    file.seek(0)
    try:
        with Image.open(file, formats=list(IMAGE_FORMATS)) as probe:
            fmt, (width, height) = probe.format, probe.size
            if width * height > max_pixels:
                raise _too_many(name, width, height, max_pixels)
            probe.verify()
    except UnidentifiedImageError:
        return None
    except Image.DecompressionBombError:
        raise MediaTooLargeError(
            f"the upload {name!r} has more pixels than {max_pixels}", max_pixels=max_pixels
        ) from None
    except (MediaTooLargeError, MemoryError):
        raise
    except Exception as error:  # a header Pillow knows, broken data behind it
        raise UnsupportedMediaError(f"the upload {name!r} is a broken image: {error}") from None
    content_type, suffix = IMAGE_FORMATS[str(fmt)]
    file.seek(0)
    try:
        with Image.open(file, formats=[str(fmt)]) as image:
            image.load()
            thumbnail = _thumbnail(image)
    except (MediaTooLargeError, MemoryError):
        raise
    except Exception as error:
        raise UnsupportedMediaError(
            f"the upload {name!r} is a {fmt} image that does not decode: {error}"
        ) from None
    return Media("image", content_type, suffix, width, height, thumbnail)


def _video(file: IO[bytes], name: str, max_pixels: int) -> Media | None:
    import av

    file.seek(0)
    try:
        container = av.open(file, mode="r")
    except Exception:  # PyAV names no container for these bytes
        return None
    with container:
        found = next(
            (
                (ctype, suffix)
                for family, ctype, suffix, _ in VIDEO_FORMATS
                if family in container.format.name.split(",")
            ),
            None,
        )
        stream = container.streams.video[0] if container.streams.video else None
        if found is None or stream is None:
            return None
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > max_pixels:
            raise _too_many(name, width, height, max_pixels)
        frame = _first_frame(container, stream)
        if frame is None:
            raise UnsupportedMediaError(
                f"the upload {name!r} is a {found[0]} with a video stream but no frame decodes"
            )
        if frame.width * frame.height > max_pixels:  # a header that said 0 x 0
            raise _too_many(name, frame.width, frame.height, max_pixels)
        image = frame.to_image()
    return Media("video", found[0], found[1], image.width, image.height, _thumbnail(image))


def _first_frame(container: Any, stream: Any) -> Any:
    try:
        for count, packet in enumerate(container.demux(stream)):
            if count >= MAX_PACKETS:
                return None
            for frame in packet.decode():
                return frame
    except Exception:  # a broken stream: no frame
        return None
    return None


def _thumbnail(image: Any) -> bytes:
    """WebP, at most THUMBNAIL_PX on the long side, turned upright by its EXIF orientation;
    the image is shrunk in place (it is not needed after)."""
    from PIL import ImageOps

    if image.mode not in ("RGB", "RGBA"):
        alpha = "A" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if alpha else "RGB")
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    image = ImageOps.exif_transpose(image)
    out = io.BytesIO()
    image.save(out, "WEBP", quality=80)
    return out.getvalue()
