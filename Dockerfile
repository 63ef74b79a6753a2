# One image for every role of ec2-terminal: the session server (`ec2-terminal serve`), the
# operator (`ec2-terminal-operator`), and the other `ec2-terminal` subcommands; each role is its
# command, so the image sets no ENTRYPOINT. Build: hack/image (docs/image.md), or
#   docker build -t ec2-terminal .
#
# The base images are build arguments. Their defaults are Docker Hub's Node.js and Python images;
# a plain Debian 12 (bookworm) image stands in for either (hack/image uses one made locally with
# debootstrap), and then Debian's own nodejs, npm and python3 (3.11) are installed from apt. The
# build and runtime stages must use the same PYTHON_IMAGE: the environment copied from one to the
# other runs the interpreter at the path it was built with.
ARG NODE_IMAGE=docker.io/library/node:20-bookworm-slim
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim-bookworm

# Registries behind a TLS-intercepting proxy: hack/image passes the host's CA bundle as the
# optional build secret `ca-certificates` (podman build --secret id=ca-certificates,src=FILE). The
# build stages trust it for npm, pip and uv; it is never written to a layer. Without it, the
# images' own CAs are used.

# Stage 1: the front-end bundle (app/static/dist), from npm with the lock file.
FROM ${NODE_IMAGE} AS web
RUN if ! command -v npm >/dev/null; then \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm \
      && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN --mount=type=secret,id=ca-certificates --mount=type=cache,target=/root/.npm \
    if [ -f /run/secrets/ca-certificates ]; then \
      export NODE_EXTRA_CA_CERTS=/run/secrets/ca-certificates; \
    fi \
    && npm ci --no-audit --no-fund --loglevel=error
COPY web/ ./
RUN npm run build

# Stage 2: the dependencies in the environment /opt/ec2-terminal, exactly as uv.lock pins them
# (prebuilt wheels from PyPI). Its own stage and layer: it changes only with pyproject.toml or
# uv.lock.
FROM ${PYTHON_IMAGE} AS deps
RUN if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip' 2>/dev/null; then \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi
# uv from PyPI at hack/versions.env's version (no container registry is needed for it).
ARG UV_VERSION=0.13.9
RUN --mount=type=secret,id=ca-certificates \
    if [ -f /run/secrets/ca-certificates ]; then \
      export PIP_CERT=/run/secrets/ca-certificates; \
    fi \
    && python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --quiet --no-cache-dir --disable-pip-version-check \
      "uv==${UV_VERSION}"
# Downloads are cached in a build cache mount (never in a layer), so a changed lock file fetches
# only what changed. Bytecode is compiled at build time: the root filesystem is read-only at run
# time, so Python could not cache it then and would compile every import at every start.
ENV UV_PROJECT_ENVIRONMENT=/opt/ec2-terminal UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never UV_PYTHON_PREFERENCE=only-system
WORKDIR /src
COPY pyproject.toml uv.lock ./
# uv's .lock is world-writable; nothing needs it after the build.
RUN --mount=type=secret,id=ca-certificates --mount=type=cache,target=/root/.cache/uv \
    if [ -f /run/secrets/ca-certificates ]; then \
      export SSL_CERT_FILE=/run/secrets/ca-certificates; \
    fi \
    && /opt/uv/bin/uv sync --frozen --no-dev --no-install-project \
    && rm -f /opt/ec2-terminal/.lock

# Stage 3: the project's own wheel, with the front-end bundle, built and installed into that
# environment; /overlay then holds only the files it added (its RECORD: the packages, the
# dist-info and the console scripts), the small layer that changes with every commit.
FROM deps AS project
COPY README.md ./
COPY app/ app/
COPY operator/ operator/
COPY --from=web /src/app/static/dist/ app/static/dist/
RUN --mount=type=secret,id=ca-certificates --mount=type=cache,target=/root/.cache/uv \
    if [ -f /run/secrets/ca-certificates ]; then \
      export SSL_CERT_FILE=/run/secrets/ca-certificates; \
    fi \
    && /opt/uv/bin/uv sync --frozen --no-dev --no-editable \
    && cd /opt/ec2-terminal \
    && site=$(echo lib/python3*/site-packages) \
    && cut -d, -f1 "$site"/ec2_terminal-*.dist-info/RECORD \
      | sed -e 's#^\.\./\.\./\.\./##; t' -e "s#^\([^/]*\).*#$site/\1#" | sort -u >/tmp/files \
    && mkdir /overlay && tar -cf - -T /tmp/files | tar -xf - -C /overlay

# Stage 4: the runtime. No compiler, package cache, build tool or source tree; the environment is
# owned by root and read-only to the fixed non-root user 10001 that everything runs as (the
# operator runs session pods as 10001:10001 with a read-only root filesystem; they write only to
# /tmp and /var/lib/ec2-terminal/recordings). No file is setuid or setgid (the base's su, passwd,
# mount...), so no process in the image can gain privileges. On a plain Debian base, Python comes
# from apt without documentation, manual pages or translations (as Debian's slim images do).
FROM ${PYTHON_IMAGE}
RUN if ! command -v python3 >/dev/null; then \
      printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
        'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
        'path-exclude /usr/share/locale/*' 'path-exclude /usr/share/lintian/*' \
        >/etc/dpkg/dpkg.cfg.d/ec2-terminal-slim \
      && apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 ca-certificates \
      && apt-get clean \
      && rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log; \
    fi \
    && find / -xdev -type f -perm /6000 -exec chmod ug-s {} + \
    && groupadd --gid 10001 ec2-terminal \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
      --shell /usr/sbin/nologin ec2-terminal \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/ec2-terminal /var/lib/ec2-terminal/recordings
COPY --from=deps /opt/ec2-terminal /opt/ec2-terminal
COPY --from=project /overlay/ /opt/ec2-terminal/
# HOME is /tmp, the one writable place under a read-only root filesystem. In a container the
# session server listens on every interface of the container's own network (the default,
# loopback, would be unreachable from outside it).
ENV PATH=/opt/ec2-terminal/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp \
    EC2_TERMINAL_LISTEN_HOST=0.0.0.0
USER 10001:10001
WORKDIR /tmp
# 8000: the session server; 8080: the operator's liveness endpoint.
EXPOSE 8000 8080
CMD ["ec2-terminal", "serve"]

# Last, so that a new version or commit rebuilds no layer above.
ARG VERSION=unknown
ARG REVISION=unknown
ARG CREATED=unknown
ARG PYTHON_IMAGE
LABEL org.opencontainers.image.title="ec2-terminal" \
      org.opencontainers.image.description="Kubernetes-native browser terminal for EC2 instances" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
