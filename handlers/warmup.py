"""Lambda handler for scheduled warm-up events (EventBridge rules or EventBridge Scheduler).

It loads and warms every backend and returns a summary; HTTP events get a 400 answer.
"""

from handlers import collector

with collector.paused():  # the runtime's imports are most of what a cold start allocates (handlers/collector.py)
    from handlers.lambda_runtime import SCHEDULED_EVENTS, entry

handler = entry("warmup", accepts=SCHEDULED_EVENTS)
