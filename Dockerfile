# syntax=docker/dockerfile:1.7
#
# railsight: one image for `railsight serve` (the default), `railsight worker`, `railsight batch`
# and `dask worker`, chosen by command.
#
#   docker build -t railsight .                                      CPU build (a CPU-only torch)
#   docker build -t railsight:cuda --build-arg VARIANT=cuda .        CUDA build, for GPU nodes
#   docker run -p 127.0.0.1:8000:8000 -v railsight-state:/var/lib/railsight railsight
#
# Every install step is in docker/install.sh, which CI runs too. Dependencies are installed before
# the code is copied in, so a code change rebuilds only the last, small layer.

ARG VARIANT=cpu
ARG PYTHON_IMAGE=python:3.12-slim-bookworm
# The CUDA build of torch brings its own cuDNN, cuBLAS and NCCL; the runtime base adds the CUDA
# runtime and the NVIDIA container settings. Keep its CUDA major in step with TORCH_INDEX_URL (cu130).
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-runtime-ubuntu24.04

# ---------------------------------------------------------------------------------------- bases
FROM ${PYTHON_IMAGE} AS base-cpu
ENV PYTHON=/usr/local/bin/python3

FROM ${CUDA_IMAGE} AS base-cuda
# Distribution packages are not pinned: the base image tag pins the distribution release, and its
# security updates should land on rebuild.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
ENV PYTHON=/usr/bin/python3

# base-cpu or base-cuda: a stage of this file, not an image from a registry, so it has no tag.
# hadolint ignore=DL3006
FROM base-${VARIANT} AS base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VENV=/opt/venv

# ---------------------------------------------------------------------------------------- deps
# The dependency list alone, so that editing other parts of pyproject.toml keeps the deps layer.
FROM base AS requirements
COPY docker/install.sh /src/docker/install.sh
COPY pyproject.toml /src/pyproject.toml
RUN /src/docker/install.sh requirements > /requirements.txt

FROM base AS builder
ARG VARIANT
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG TORCH_INDEX_URL=
COPY docker/install.sh /src/docker/install.sh
COPY --from=requirements /requirements.txt /src/docker/requirements.txt
RUN --mount=type=cache,target=/root/.cache/pip \
    VARIANT="${VARIANT}" TORCH_VERSION="${TORCH_VERSION}" TORCHVISION_VERSION="${TORCHVISION_VERSION}" \
    TORCH_INDEX_URL="${TORCH_INDEX_URL}" REQUIREMENTS=/src/docker/requirements.txt \
    /src/docker/install.sh deps

# ---------------------------------------------------------------------------------------- code
# .dockerignore lets in only pyproject.toml, README.md, docker/ and the Python packages, with the
# shipped weights in models/weights/.
COPY . /src
RUN --mount=type=cache,target=/root/.cache/pip /src/docker/install.sh app

# ---------------------------------------------------------------------------------------- runtime
FROM base AS runtime
ARG VARIANT
LABEL org.opencontainers.image.title="railsight" \
      org.opencontainers.image.description="Find, count and map railcars, tarped cargo and rail tracks in satellite scenes" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.railsight.variant="${VARIANT}"

RUN groupadd --system --gid 10001 railsight \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/railsight --create-home \
       --shell /usr/sbin/nologin railsight \
    && mkdir -p /var/lib/railsight /data \
    && chown railsight:railsight /var/lib/railsight

COPY --from=builder /opt/venv /opt/venv

# Laptop defaults: state (SQLite store, results, the development key) in /var/lib/railsight, scenes
# under /data, a LocalCluster in the container. DEV_MODE makes one local API key in the state dir
# (`docker exec <container> cat /var/lib/railsight/dev-api-key`) instead of refusing to start; the
# Kubernetes manifests turn it off and mount real keys.
ENV PATH=/opt/venv/bin:${PATH} \
    HOME=/home/railsight \
    RAILSIGHT_STATE_DIR=/var/lib/railsight \
    RAILSIGHT_DATA_ROOTS=/data \
    RAILSIGHT_DEVICE=auto \
    RAILSIGHT_DEV_MODE=1

USER 10001:10001
WORKDIR /home/railsight
EXPOSE 8000

# For `railsight serve` only; run other commands with --no-healthcheck (Kubernetes ignores it and
# uses the probes in k8s/).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["railsight", "serve", "--host", "0.0.0.0", "--port", "8000"]
