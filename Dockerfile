# syntax=docker/dockerfile:1
#
# The Pokémon Generator API on its files backend (the images in pokemon/, no torch): the slim image of the
# description, for one container or a fleet behind a proxy (compose.yaml). Build from the repository root:
#
#   docker build -t pokemon-api .
#   docker run -p 22222:22222 -v "$PWD/certs:/app/certs:ro" pokemon-api
#
# The diffusion backend on a GPU has its own image (Dockerfile.gpu); both take their versions from
# constraints.txt, so either image runs what the tests ran.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app

# The dependencies (the project's own and the redis extra, for POKEMON_REDIS_URL) read from pyproject.toml
# before the code is copied, so that a code change keeps this layer. The constraints pin every version to
# what CI tested (`make lock`); they name torch too, but nothing here asks for it, so none is installed.
COPY pyproject.toml README.md LICENSE constraints.txt ./
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(p["dependencies"] + p["optional-dependencies"]["redis"]))' > /tmp/requirements.txt \
    && pip install --no-cache-dir --constraint constraints.txt --requirement /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The project itself (core, handlers, the pokemon-server script), then the files backend's images.
COPY core ./core
COPY handlers ./handlers
RUN pip install --no-cache-dir --no-deps --constraint constraints.txt . \
    && rm -rf build ./*.egg-info
COPY pokemon/*.png ./pokemon/

RUN groupadd --system --gid 10001 pokemon \
    && useradd --system --uid 10001 --gid pokemon --home-dir /app --no-create-home --shell /usr/sbin/nologin pokemon \
    && mkdir -p /app/certs

# Numeric, so that a runtime (Kubernetes runAsNonRoot, say) can tell that it is not root. Every file above
# is root's and read-only to this user: the service writes nothing, so the container may run read-only.
USER 10001:10001

# Settings: README.md. Certificates: mount cert.pem and key.pem read-only on /app/certs (HTTPS; the key must
# be readable by uid 10001); without them the server speaks plain HTTP and says so at start-up — what the
# fleet in compose.yaml wants, its proxy terminating TLS.
ENV POKEMON_GENERATION_BACKEND=files \
    POKEMON_IMAGES_DIR=/app/pokemon \
    POKEMON_HOST=0.0.0.0 \
    POKEMON_PORT=22222 \
    POKEMON_TLS_CERT=/app/certs/cert.pem \
    POKEMON_TLS_KEY=/app/certs/key.pem

EXPOSE 22222

# Liveness from Python (the slim image has no curl): HTTPS when a certificate is mounted (the server then
# speaks nothing else; the development certificate is self-signed, hence no verification on loopback),
# plain HTTP otherwise. /health answers 200 while Redis is away (status "degraded"): an outage of the shared
# store must not mark every instance unhealthy at once.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, ssl, urllib.request as r; tls = os.path.isfile(os.environ['POKEMON_TLS_CERT']); url = ('https' if tls else 'http') + '://127.0.0.1:' + os.environ['POKEMON_PORT'] + '/health'; r.urlopen(url, timeout=4, context=ssl._create_unverified_context() if tls else None)"]

# SIGTERM (docker stop) drains in-flight requests for up to 10 s, then the process exits 0.
STOPSIGNAL SIGTERM
CMD ["pokemon-server"]
