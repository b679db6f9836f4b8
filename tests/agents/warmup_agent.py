"""A reference agent on AWS's own `bedrock-agentcore` SDK, for the emulator's per-session mode.

It has the shape of the warm-pool design's handler: `{"type": "warmup"}` is answered at once and
does no work, so warming a session costs only the cold start. Any other payload is a turn: the
count lives in this process's memory and comes back with the process id, which is what makes
session isolation observable (two sessions sharing a process would share the count).

A turn may ask for work: `"workSeconds": n` is done before answering (a long synchronous
turn), `"backgroundSeconds": n` after answering, tracked by the SDK so that `GET /ping`
answers HealthyBusy until it ends, as a batch agent does while it runs a batch. Both are capped
at 60 seconds.

The port comes from `AGENT_PORT` (the emulator picks a free loopback port per session); the
agent binds 127.0.0.1 only.
"""

import os
import threading
import time

from bedrock_agentcore.runtime import BedrockAgentCoreApp

MAX_WORK_SECONDS = 60.0

app = BedrockAgentCoreApp()
_turns = 0
_turns_lock = threading.Lock()


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
    global _turns
    with _turns_lock:
        _turns += 1
        turns = _turns
    answer = {"turns": turns, "pid": os.getpid(), "sessionId": context.session_id}
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
