# The gateway on its embedded default (SQLite under /var/lib/gateway), as a non-root user.
FROM python:3.11-slim

RUN useradd --system --create-home --uid 10001 gateway
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip install --no-cache-dir . && mkdir -p /var/lib/gateway && chown gateway:gateway /var/lib/gateway
COPY partners ./partners

ENV GATEWAY_HOME=/var/lib/gateway \
    GATEWAY_KEYS_DIR=/var/lib/gateway/keys \
    GATEWAY_PARTNERS_DIR=/app/partners
USER gateway
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
CMD ["gateway", "serve", "--host", "0.0.0.0", "--port", "8080"]
