"""A reference agent on AWS's own `bedrock-agentcore` SDK, for the emulator's per-session mode.

It has the shape of the warm-pool design's handler: `{"type": "warmup"}` is answered at once and
does no work, so warming a session costs only the cold start. Any other payload is a turn: the
count lives in this process's memory and comes back with the process id, which is what makes
session isolation observable (two sessions sharing a process would share the count).

A turn may ask for work: `"workSeconds": n` is done before answering (a long synchronous
turn), `"backgroundSeconds": n` after answering, tracked by the SDK so that `GET /ping`
answers HealthyBusy until it ends, as a batch agent does while it runs a batch. Both are capped
at 60 seconds.

On platform V2 the process is started once, gets the warmup build hook (`POST /warmup`), and
is snapshotted; every session is a restore of that snapshot. So nothing per session is made at
import or in the hook: the instance token that tells sessions apart is drawn at the first turn
(from the OS, not from `random`, whose state the snapshot would copy), and the hook only
prepares what every session shares. The SDK's own ping timestamp is first set at a ping, which
the platform also sends before the snapshot; its value is the SDK's concern, not this file's.

The port comes from `AGENT_PORT` (the emulator picks a free loopback port per session); the
agent binds 127.0.0.1 only.
"""

import os
import secrets
import threading
import time

from bedrock_agentcore.runtime import BedrockAgentCoreApp
from starlette.responses import JSONResponse

MAX_WORK_SECONDS = 60.0

BUILD_HOOK_PATH = "/warmup"

app = BedrockAgentCoreApp()
_turns = 0
_turns_lock = threading.Lock()
# Per session, so made at first use: see the module's notes on V2.
_instance = None
_built_with_hook = False


async def _build_hook(request):
    """The V2 warmup build hook: any 2xx lets the platform take its snapshot.

    This agent has nothing expensive to load; a real one would import its framework and load
    models here. Refused once a turn was served, as it must not reset a live session.
    """
    global _built_with_hook
    with _turns_lock:
        if _turns:
            return JSONResponse({"error": "the build hook runs before any session"}, status_code=409)
        _built_with_hook = True
    return JSONResponse({"status": "ready"})


# The SDK's app is a Starlette app; the hook is a route beside /invocations and /ping.
app.add_route(BUILD_HOOK_PATH, _build_hook, methods=["POST"])


def _background(seconds: float) -> None:
    task_id = app.add_async_task("background", {"seconds": seconds})
    try:
        time.sleep(seconds)
    finally:
        app.complete_async_task(task_id)


@app.entrypoint
def handle(payload, context):
    if isinstance(payload, dict) and payload.get("type") == "warmup":
        return {"status": "warm"}
    global _turns, _instance
    with _turns_lock:
        _turns += 1
        turns = _turns
        if _instance is None:
            _instance = secrets.token_hex(16)
    answer = {
        "turns": turns,
        "pid": os.getpid(),
        "sessionId": context.session_id,
        "instance": _instance,
        "builtWithHook": _built_with_hook,
    }
    work = _seconds(payload, "workSeconds")
    if work:
        time.sleep(work)
    background = _seconds(payload, "backgroundSeconds")
    if background:
        threading.Thread(target=_background, args=(background,), daemon=True).start()
        answer["backgroundSeconds"] = background
    return answer


def _seconds(payload, field: str) -> float:
    """A positive number of seconds from the payload, capped; 0 when absent or not a number."""
    value = payload.get(field) if isinstance(payload, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        return 0.0
    return min(float(value), MAX_WORK_SECONDS)


def _port() -> int:
    raw = os.environ.get("AGENT_PORT", "")
    try:
        port = int(raw)
    except ValueError:
        raise SystemExit(f"AGENT_PORT must be a port number, got {raw!r}") from None
    if not 0 < port < 65536:
        raise SystemExit(f"AGENT_PORT must be in 1..65535, got {port}")
    return port


if __name__ == "__main__":
    app.run(port=_port(), host="127.0.0.1")
