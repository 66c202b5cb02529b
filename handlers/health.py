"""Lambda handler for `GET /health` and `GET /health/ready` behind API Gateway (REST or HTTP API) or an ALB."""

from handlers.lambda_runtime import HTTP_EVENTS, entry

handler = entry("health", accepts=HTTP_EVENTS)
