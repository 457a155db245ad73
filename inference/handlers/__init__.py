"""Model backends: a task's params and input media in, PNG or MP4 bytes out.

Callers (the Ray actor, the HTTP reference worker) depend on the `Backend`
protocol only (`inference.handlers.results`). `DiffusersBackend`
(`inference.handlers.core`) runs real diffusers pipelines: the tiny ones from
`inference.tiny` by default, or any model id / folder with the same pipeline
families. torch and diffusers are imported when a backend is built, never at
module import, so the API process can import `inference` cheaply.

Each task family is one handler function, registered by task type
(`inference.handlers.registry`), in its own module here; its docstring says what
the family's params and inputs are:

- `generation`: text → image(s);
- `edits`: image → image with a prompt (magic, annotated and travel edits);
- `inpaint`: image + mask;
- `upscale`: x4;
- `travel`: a clip between two pictures, and the transition joining two clips;
- `animate`: one picture → a clip that loops on it;
- `stitch`: clips concatenated (no model).

Importing this package registers them all.
"""

from __future__ import annotations

from inference.handlers import animate, edits, generation, inpaint, stitch, travel, upscale
from inference.handlers.core import DiffusersBackend
from inference.handlers.registry import HANDLERS, handler, register_handler, unregister_handler

__all__ = [
    "HANDLERS",
    "DiffusersBackend",
    "animate",
    "edits",
    "generation",
    "handler",
    "inpaint",
    "register_handler",
    "stitch",
    "travel",
    "unregister_handler",
    "upscale",
]
