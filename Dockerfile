# The sharedml image: platform, node agent and dealer (issue 13 item 6).
#   docker build -t sharedml:0.1.0 .
# Network is used at build time only (PyPI); a container needs none but its
# deployment's own links. Bundles from 'sharedml deploy' mount at /bundle.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links /wheels sharedml \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /bundle --no-create-home sharedml
USER 10001
WORKDIR /bundle
EXPOSE 8600 8601 7000 7100 9464
ENTRYPOINT ["sharedml"]
CMD ["--help"]
