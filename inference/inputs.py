"""A claimed task's input media: the locations its params name, read into bytes.

Params carry locations, never bytes: `/media/...` (our media store, uploads
included) or an `http(s)://` URL. Stitches name no files; they name the tasks
whose outputs they join (`segment_task_ids`), looked up when they run. The
result maps the input names the backends read (`image`, `mask`, `start_image`,
`segment_0`, …, and `lora_0`, … for the LoRA files of `params.loras`) to bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from domain import families
from inference.errors import InferenceError, InvalidInputError, MediaNotFoundError
from inference.media import MediaStore

# Which params name single input files (param → input name) and which task types are
# stitches: `families.single_inputs()` and `families.stitches()`, derived from the
# domain's registered task families (each task type names its inputs) and read afresh,
# so a family registered later counts.
LORA_INPUT = "lora_"
MAX_DOWNLOAD = 512 * 1024**2

Reader = Callable[[str], bytes]


class InputFetchError(InferenceError):
    """A remote input could not be fetched now (network); running again may succeed."""

    code = "input_fetch_failed"
    retryable = True


def media_reader(store: MediaStore, timeout: float = 30.0) -> Reader:
    """Reads `/media/...` from the store and `http(s)://` with a bounded download."""

    def read(location: str) -> bytes:
        if location.startswith("/media/"):
            return store.get(location)
        if location.startswith(("http://", "https://")):
            return download(location, timeout)
        raise InvalidInputError(f"not a media location or URL: {location!r}")

    return read


def download(url: str, timeout: float = 30.0) -> bytes:
    import httpx

    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            if response.status_code == 404:
                raise MediaNotFoundError(f"no media at {url}")
            response.raise_for_status()
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_DOWNLOAD:
                    raise InvalidInputError(f"{url} is larger than {MAX_DOWNLOAD} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as error:
        raise InputFetchError(f"could not fetch {url}: {error}") from None


def input_locations(
    task_type: str, params: Mapping[str, Any], output_of: Callable[[str], str | None]
) -> dict[str, str]:
    """Input name → location for one task (nothing read yet)."""
    if task_type in families.stitches():
        return _stitch_locations(task_type, params, output_of)
    found = {
        name: str(params[key])
        for key, name in families.single_inputs().items()
        if params.get(key) not in (None, "")
    }
    return {**found, **lora_locations(params)}


def lora_locations(params: Mapping[str, Any]) -> dict[str, str]:
    """`lora_<i>` → where the i-th LoRA file is (its `path`: task creation resolved a
    `resource_id` to it). The backends take these inputs apart from the media ones."""
    loras = params.get("loras") or []
    if not isinstance(loras, list):
        raise InvalidInputError(f"params.loras must be a list, got {loras!r}")
    found = {}
    for index, lora in enumerate(loras):
        path = lora.get("path") if isinstance(lora, Mapping) else None
        if not isinstance(path, str) or not path:
            raise InvalidInputError(f"params.loras[{index}] has no path: {lora!r}")
        found[f"{LORA_INPUT}{index}"] = path
    return found


def read_inputs(
    task_type: str, params: Mapping[str, Any], read: Reader, output_of: Callable[[str], str | None]
) -> dict[str, bytes]:
    """Input name → bytes for one task."""
    return {
        name: read(location)
        for name, location in input_locations(task_type, params, output_of).items()
    }


def _stitch_locations(
    task_type: str, params: Mapping[str, Any], output_of: Callable[[str], str | None]
) -> dict[str, str]:
    segments = [_output(output_of, t) for t in _list(params, "segment_task_ids")]
    if task_type == "travel_stitch":
        return {f"segment_{i}": location for i, location in enumerate(segments)}
    # Joining clips: clip 0, transition 0, clip 1, transition 1, …, last clip.
    clips = [str(c) for c in _list(params, "clip_urls")]
    if len(clips) != len(segments) + 1:
        raise InvalidInputError(
            f"{len(clips)} clips need {len(clips) - 1} transitions, got {len(segments)}"
        )
    parts = [clips[0]]
    for transition, clip in zip(segments, clips[1:], strict=True):
        parts += [transition, clip]
    return {f"part_{i}": location for i, location in enumerate(parts)}


def _list(params: Mapping[str, Any], key: str) -> list[Any]:
    value = params.get(key)
    if not isinstance(value, list) or not value:
        raise InvalidInputError(f"params.{key} must be a non-empty list")
    return value


def _output(output_of: Callable[[str], str | None], task_id: Any) -> str:
    location = output_of(str(task_id))
    if not location:
        raise InvalidInputError(f"task {task_id} has no output to stitch")
    return location
