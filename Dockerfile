# The Airbyte source image: `source-conversations` (the Airbyte protocol) over tap-conversations.
#
#   docker build -t airbyte/source-conversations:0.1.0 .
#   docker run --rm airbyte/source-conversations:0.1.0 spec
#   docker run --rm -v "$PWD/secrets:/secrets" airbyte/source-conversations:0.1.0 \
#       check --config /secrets/config.json
#
# Dependencies are installed exactly as pinned in uv.lock: the runtime ones (the Airbyte protocol
# models included), no extra and no dependency group (dev tools, orchestration).
# Keep io.airbyte.version equal to the version in pyproject.toml (a test checks it).

FROM python:3.11-slim AS build
RUN pip install --no-cache-dir "uv>=0.9,<1"
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY tap_conversations ./tap_conversations
RUN uv export --frozen --no-default-groups --no-emit-project --no-hashes \
        --output-file requirements.txt \
    && uv venv /opt/venv \
    && uv pip install --no-cache --python /opt/venv/bin/python -r requirements.txt \
    && uv pip install --no-cache --python /opt/venv/bin/python --no-deps .

FROM python:3.11-slim
COPY --from=build /opt/venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}" \
    AIRBYTE_ENTRYPOINT="source-conversations"
RUN useradd --uid 1000 --create-home airbyte
USER airbyte
WORKDIR /home/airbyte

LABEL io.airbyte.name="airbyte/source-conversations" \
      io.airbyte.version="0.1.0"

ENTRYPOINT ["source-conversations"]
