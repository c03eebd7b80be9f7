"""`chaos`: a fault-injection job type that exists on the local stage only.

The reliability suite (tests/reliability/test_faults.py) uses it to make a worker die mid-batch:
nothing outside the worker can make it call `sys.exit` or run past its function timeout.
It is not a public job type: `POST /v1/jobs` refuses it (chalicelib/jobs/types.py does not list
it), and `build_handlers` registers it only when `settings.stage == "local"`, so on dev and prod a
chaos message is an unknown job type (dead at once, never run). The suite enqueues it straight
through `JobService` / the queue.

Payload: `{"action": "exit" | "sleep" | "ok", "fail_attempts": 1, "seconds": <float>, "code": <int>}`.
The first `fail_attempts` attempts (default 1) misbehave; later ones complete with
`{"chaos": action, "attempt": n}`, so a redelivery after the fault shows the recovery.
- `exit`: `sys.exit(code)` (default 3): the runtime process dies, the invoke is a
  `Runtime.ExitError`, and the batch's messages come back after the visibility timeout.
- `sleep`: sleep `seconds` (default: the invocation's time left + 5 s), so the function times out
  and its process group is killed mid-batch.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from chalicelib.errors import FatalError
from chalicelib.jobs.worker import invocation_time_left
from chalicelib.observability import logger

if TYPE_CHECKING:
    from chalicelib.jobs.model import Job
    from chalicelib.jobs.worker import Handler
    from chalicelib.services import Services

ACTIONS = ("exit", "sleep", "ok")
STAGE = "local"


def chaos_handler(svc: Services) -> Handler:
    if svc.settings.stage != STAGE:
        raise RuntimeError("the chaos job type exists on the local stage only")

    def run(job: Job) -> dict[str, Any]:
        payload = job.payload
        action = payload.get("action")
        if action not in ACTIONS:
            raise FatalError("invalid_chaos", f"action must be one of {', '.join(ACTIONS)}")
        if job.attempts <= int(payload.get("fail_attempts", 1)):
            if action == "exit":
                logger.warning("chaos: the worker process exits now", extra={"attempt": job.attempts})
                sys.exit(int(payload.get("code", 3)))
            if action == "sleep":
                seconds = payload.get("seconds")
                if seconds is None:
                    seconds = (invocation_time_left() or 0.0) + 5.0
                logger.warning("chaos: sleeping past the function timeout", extra={"seconds": seconds})
                time.sleep(float(seconds))
        return {"chaos": action, "attempt": job.attempts}

    return run
