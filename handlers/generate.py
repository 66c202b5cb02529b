"""Lambda handler for `GET /v1/generate` behind API Gateway (REST or HTTP API) or an ALB.

It takes scheduled events too, so that a schedule can keep this very function warm.
"""

from handlers.lambda_runtime import HTTP_EVENTS, SCHEDULED_EVENTS, entry

handler = entry("generate", accepts=HTTP_EVENTS | SCHEDULED_EVENTS)
