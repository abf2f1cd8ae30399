# The mirror as a container image, built offline from a base made from the Debian package
# registry (scripts/build-image.sh: mmdebstrap bookworm + docker import). Any image with
# Debian bookworm's python3 (3.11) and python3-venv works as BASE:
#   docker build --build-arg BASE=local/bookworm-python:3.11 -t mirror:0.1.0 .
# PyPI packages come from the index given as build arguments (PIP_INDEX_URL,
# PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, PIP_TRUSTED_HOST; default: pypi.org); build-image.sh
# passes the ones this machine's pip is configured with.
ARG BASE=local/bookworm-python:3.11

# --- build: a virtual environment with the mirror and its pinned dependencies ---
FROM ${BASE} AS build
ARG PIP_INDEX_URL=https://pypi.org/simple
# Unset unless given (an empty PIP_* variable is not the same as none to pip).
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
ARG PIP_TRUSTED_HOST
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# .dockerignore keeps the context to the package, its metadata and conf/container.toml.
COPY . /src
# A wheel of the project, then the wheel and its dependencies (constraints.txt pins them)
# into the venv at its final path (a venv does not move); /out is exactly what the runtime
# stage copies: the venv and the configuration.
RUN python3 -m venv /opt/mirror \
    && cd /src \
    && /opt/mirror/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/mirror/bin/pip install -c constraints.txt /wheels/mirror-*.whl \
    && /opt/mirror/bin/python -m compileall -q /opt/mirror/lib \
    && mkdir -p /out/opt && cp -a /opt/mirror /out/opt/mirror \
    && install -D -m 0644 conf/container.toml /out/etc/mirror/mirror.toml

# --- runtime: the base, the venv, a pinned non-root user; no compiler, no pip cache, no key ---
FROM ${BASE}
ARG UID=10001
ARG GID=10001
RUN groupadd --gid "${GID}" mirror \
    && useradd --uid "${UID}" --gid "${GID}" --home-dir /var/lib/mirror --no-create-home \
       --shell /usr/sbin/nologin mirror \
    && install -d -o "${UID}" -g "${GID}" -m 0700 /var/lib/mirror /var/lib/mirror/data \
    && install -d -o "${UID}" -g "${GID}" -m 0700 /run/mirror
COPY --from=build /out/ /
ENV PATH=/opt/mirror/bin:/usr/sbin:/usr/bin:/sbin:/bin PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Numeric, so a kubelet can check runAsNonRoot without reading /etc/passwd.
USER ${UID}:${GID}
WORKDIR /var/lib/mirror
VOLUME ["/var/lib/mirror"]
EXPOSE 5016
# Follows the configured listen address and TLS: it reads the same file and MIRROR_*
# variables as `mirror serve` (a CMD with another --config needs the same change here).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["mirror", "healthcheck", "--config", "/etc/mirror/mirror.toml"]
ENTRYPOINT ["mirror"]
CMD ["serve", "--config", "/etc/mirror/mirror.toml"]
