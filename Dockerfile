# One image for every lighter-bot process. The command picks the process:
#   python -m services.<feed|maker|hedger|guard|gateway|venue>   one service (docker-compose.yml, services/*/railway.json)
#   python -m core.main --no-venue                                the all-in-one bot (root railway.json, the seed's "lighter-bot")
# Secrets never enter the image: they come from the environment at run time (.env / Railway variables).
FROM python:3.11-slim

# HEALTH_HOST: health/metrics listen on all interfaces, so compose and Railway healthchecks reach them.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HEALTH_HOST=0.0.0.0

# redis-server: core.main runs its own Redis in the all-in-one container (not needed when REDIS_URL
# points at another Redis, e.g. the compose "redis" service). curl: the operator's health probe.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server curl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin bot \
    && mkdir -p /app/var /app/data/instruments \
    && chown -R bot:bot /app/var /app/data /app/profiles /app/config.yaml

USER bot

# Health/metrics: feed 8081, maker 8082, hedger 8083, guard 8084, gateway 8085 ($PORT overrides);
# core.main's aggregate /health 8000; local venue 8700.
EXPOSE 8000 8081 8082 8083 8084 8085 8700

CMD ["python", "-m", "core.main", "--no-venue"]
