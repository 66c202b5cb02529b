"""Lambda handler for `GET /v1/generate` behind API Gateway (REST or HTTP API) or an ALB.

It takes scheduled events too, so that a schedule can keep this very function warm.
"""

from handlers import collector

with collector.paused():  # the runtime's imports are most of what a cold start allocates (handlers/collector.py)
    from handlers.lambda_runtime import HTTP_EVENTS, SCHEDULED_EVENTS, entry

handler = entry("generate", accepts=HTTP_EVENTS | SCHEDULED_EVENTS)
