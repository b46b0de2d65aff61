# The driftline worker and trainer (docker-compose.yml). Any driftline command:
#   docker run --rm driftline:local models list
FROM python:3.12-slim

WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY driftline ./driftline
COPY agents ./agents
COPY models ./models
RUN pip install --no-cache-dir . && useradd --create-home --uid 10001 driftline

USER driftline
ENTRYPOINT ["driftline"]
CMD ["worker"]
