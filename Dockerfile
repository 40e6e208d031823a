# syntax=docker/dockerfile:1
# Container image for all helpline services. One image, one CLI:
#   docker run helpline run intake|triage|escalator|metrics|simulator
#   docker run helpline topics create
#   docker run helpline db migrate
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    HELPLINE_HTTP_HOST=0.0.0.0 \
    HELPLINE_LOG_JSON=true

# Fixed numeric UID/GID so Kubernetes can verify runAsNonRoot.
ARG HELPLINE_UID=10001
ARG HELPLINE_GID=10001
RUN groupadd --system --gid "${HELPLINE_GID}" helpline \
 && useradd --system --uid "${HELPLINE_UID}" --gid helpline \
        --home-dir /home/helpline --create-home --shell /usr/sbin/nologin helpline

WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir ".[otel]" \
 && rm -rf /root/.cache

USER ${HELPLINE_UID}:${HELPLINE_GID}
WORKDIR /home/helpline

EXPOSE 8001 8002 8003 8004 8005 8006 8010

# helpline handles SIGTERM itself; exec form keeps it as PID 1 so it receives it.
STOPSIGNAL SIGTERM
ENTRYPOINT ["helpline"]
CMD ["run", "intake"]
