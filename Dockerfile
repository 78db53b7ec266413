# Image for every hotline process: web (gunicorn), RQ worker, scheduler and the one-shot migration.
# docker-compose.yml picks the process with `command`.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system hotline \
    && useradd --system --gid hotline --home-dir /app --no-create-home --shell /usr/sbin/nologin hotline

WORKDIR /app

# Dependencies get their own layer, read from pyproject.toml, so a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --requirement /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# An editable install keeps PROJECT_ROOT at /app, where routing_rules/, migrations/ and alembic.ini live.
COPY . .
RUN pip install --no-deps --editable . \
    && pybabel compile --statistics --domain messages --directory hotline/translations \
    && mkdir -p /app/instance \
    && chown hotline:hotline /app/instance

USER hotline

ENV HOTLINE_INSTANCE_DIR=/app/instance \
    HOTLINE_RULES_DIR=/app/routing_rules

EXPOSE 8000

CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--access-logfile", "-", "hotline.wsgi:app"]
