# The session server and operator image. Build: podman build -t ec2-terminal . (or docker build)
# Stage 1: the front-end bundle, from npm with the lock file.
FROM node:20-bookworm-slim AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN mkdir -p ../app/static && npm run build

# Stage 2: the Python environment, from the uv lock file.
FROM python:3.11-slim-bookworm AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
WORKDIR /src
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/opt/venv
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY app/ app/
COPY operator/ operator/
COPY --from=web /src/app/static/dist app/static/dist
RUN uv sync --frozen --no-dev --no-editable

# Stage 3: runtime, non-root, read-only root filesystem friendly (writes only to /tmp).
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends openssh-client \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --home-dir /home/terminal --create-home terminal
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/home/terminal
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["ec2-terminal"]
CMD ["serve", "--listen-host", "0.0.0.0"]
