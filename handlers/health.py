"""Lambda handler for `GET /health` and `GET /health/ready` behind API Gateway (REST or HTTP API) or an ALB."""

from handlers import collector

with collector.paused():  # the runtime's imports are most of what a cold start allocates (handlers/collector.py)
    from handlers.lambda_runtime import HTTP_EVENTS, entry

handler = entry("health", accepts=HTTP_EVENTS)
