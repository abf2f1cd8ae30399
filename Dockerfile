# The mirror as a container image. Not built on the development machines (no Docker engine);
# kept simple and conventional so it builds anywhere.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY mirror ./mirror
COPY conf ./conf
RUN pip install . && useradd --system --home-dir /var/lib/mirror --create-home mirror

USER mirror
VOLUME ["/var/lib/mirror"]
EXPOSE 5016
# Listen on all interfaces inside the container; publish the port to loopback or a
# node-local address only (plain HTTP), or mount a certificate and set
# MIRROR_SERVER_TLS_CERT / MIRROR_SERVER_TLS_KEY (and drop ALLOW_PLAIN_HTTP).
# The key-encryption key lives outside the cache volume: mount a secret at /run/mirror.
ENV MIRROR_SERVER_LISTEN=0.0.0.0:5016 MIRROR_STORAGE_DATA_DIR=/var/lib/mirror \
    MIRROR_SERVER_ALLOW_PLAIN_HTTP=true MIRROR_ENCRYPTION_KEK_FILE=/run/mirror/mirror.kek
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:5016/healthz'); sys.exit(0)"
ENTRYPOINT ["mirror"]
CMD ["serve"]
