"""A projections runner in a process of its own (killed with SIGKILL by the tests).

python -m tests.projections.runner_process '<json: env, conninfo, schema, batch_size>'
"""

from __future__ import annotations

import json
import sys

from darkroom import redact
from domain.studio import Studio
from projections import all_views
from projections.engine.runner import Runner


def main() -> None:
    redact.install()  # as `darkroom serve`: no credential in any log line
    spec = json.loads(sys.argv[1])
    app = Studio(env=spec["env"])
    runner = Runner(
        app,
        spec["conninfo"],
        spec["schema"],
        all_views(),
        batch_size=spec.get("batch_size", 2000),
        batch_latency=spec.get("batch_latency", 0.05),
    )
    print("ready", flush=True)
    with runner:
        runner.run_forever()


if __name__ == "__main__":
    main()
