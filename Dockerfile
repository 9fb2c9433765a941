# One image for the Dagster code server, webserver and daemon (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Dagster reads its instance configuration (dagster.yaml) from DAGSTER_HOME.
# `pip install .` puts the package in site-packages, away from the dbt project,
# so DBT_PROJECT_DIR points the code at the copy shipped in this image.
ENV DAGSTER_HOME=/opt/dagster/home \
    DBT_PROJECT_DIR=/opt/dagster/app/dbt_project

WORKDIR /opt/dagster/app

# .dockerignore keeps local state (.venv, .platform, data, dbt targets) out.
COPY . .

# Dependencies are pinned in pyproject.toml (dbt-core stays <1.12).
RUN pip install .

COPY dagster.yaml ${DAGSTER_HOME}/dagster.yaml
RUN mkdir -p ${DAGSTER_HOME}/artifacts

# Parse the dbt project now so the code location starts without running dbt:
# this writes dbt_project/target/manifest.json. Rebuild the image after
# changing dbt models.
RUN analytics-platform prepare \
    && test -f "${DBT_PROJECT_DIR}/target/manifest.json"

# The command comes from docker-compose.yml (code server, webserver or daemon).
