# pointsbot in a container: `docker compose up -d` (compose.yaml), or
#   docker build -t pointsbot .
#   docker run -d --name pointsbot -v pointsbot-data:/data \
#     -v "$PWD/config.toml:/config/config.toml:ro" --env-file pointsbot.env pointsbot
# The configuration is mounted at /config/config.toml; give it `[storage] path =
# "/data/pointsbot.sqlite3"` so the database lives on the /data volume (README "Deploy").

# The build stage installs the project and its dependencies into a virtualenv, so that the
# image the bot runs in carries no compilers, caches or sources.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
RUN python -m venv /opt/pointsbot
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY storage ./storage
RUN /opt/pointsbot/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
# tini: PID 1 that forwards SIGTERM to the bot (which then stops cleanly) and reaps children.
# fonts-noto-cjk: the wheel, badge wall and chart pictures draw Chinese with it (bot/wheel.py
# finds it); fonts-dejavu-core: their numbers and Latin labels.
# Debian's versions are not pinned: the image takes the security fixes of its base release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini fonts-noto-cjk fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
# A dedicated user without a shell or a password; it owns only the data volume.
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin pointsbot \
    && mkdir -p /data /config \
    && chown pointsbot:pointsbot /data
COPY --from=build /opt/pointsbot /opt/pointsbot
ENV PATH="/opt/pointsbot/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    POINTSBOT_CONFIG=/config/config.toml \
    POINTSBOT_HEALTHCHECK_URL=http://127.0.0.1:8080/healthz
# Relative paths in the configuration land on the volume too.
WORKDIR /data
VOLUME ["/data"]
# The one HTTP server ([server] port): webhook, till API, /healthz and /metrics.
EXPOSE 8080
# The numeric id (useradd above), so that a runtime can tell it is not root without the image.
USER 10001:10001
# /healthz answers 200 while the store answers, updates arrive and the outbox moves; urlopen
# raises (exit 1) on anything else. Python's own client: the slim image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['POINTSBOT_HEALTHCHECK_URL'], timeout=4)"]
# Migrations run when the bot opens the database, so a new image upgrades it at start.
# `docker run IMAGE backup --config /config/config.toml /data/backups/x.sqlite3` runs another
# command of the CLI instead of `run`.
ENTRYPOINT ["tini", "--", "pointsbot"]
CMD ["run", "--config", "/config/config.toml"]
