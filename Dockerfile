# syntax=docker/dockerfile:1
#
# The TechShop Streams image: one `techshop` console script, a Faust worker by default.
#
#   docker build -t techshop-streams .                       # CPU (onnxruntime)
#   docker build -t techshop-streams:gpu --build-arg EXTRAS=gpu .   # CUDA (onnxruntime-gpu)
#
# Configuration is TECHSHOP_* environment variables only (streams/settings.py).

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: resolve and install into a virtual environment --------------------
FROM ${PYTHON_IMAGE} AS build

# Comma-separated extras of the project: "" (CPU) or "gpu" (onnxruntime-gpu workers).
ARG EXTRAS=""

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Only what the wheel needs (there is no .dockerignore: never copy .venv/.techshop).
COPY pyproject.toml constraints.txt README.md ./
COPY streams ./streams
COPY agents ./agents
COPY schemas ./schemas
COPY models ./models
COPY scorers ./scorers
COPY replay ./replay

# The constraints file pins every dependency (`make lock`); the project is installed
# non-editable so the runtime stage needs only /opt/venv. With the gpu extra, both
# onnxruntime and onnxruntime-gpu get installed; they ship the same `onnxruntime`
# module and overwrite each other's files, so only the GPU build is kept, whole, with
# its `cuda,cudnn` extras: the NVIDIA runtime libraries as wheels (slim has no CUDA;
# the container toolkit brings only the driver). Match the host driver to that CUDA.
RUN set -eux; \
    if [ -n "$EXTRAS" ]; then spec=".[$EXTRAS]"; else spec="."; fi; \
    pip install -c constraints.txt "$spec"; \
    case ",$EXTRAS," in \
      *,gpu,*) \
        gpu_version="$(pip show onnxruntime-gpu | sed -n 's/^Version: //p')"; \
        pip uninstall -y onnxruntime onnxruntime-gpu; \
        pip install -c constraints.txt "onnxruntime-gpu[cuda,cudnn]==${gpu_version}"; \
        ;; \
    esac; \
    techshop --help >/dev/null

# --- runtime ------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="techshop-streams" \
      org.opencontainers.image.description="Streaming fraud, recommendation and image-moderation decisions on Kafka (Faust)" \
      org.opencontainers.image.licenses="Apache-2.0"

# opencv-python (pulled in by rapidocr-onnxruntime for the moderation OCR stage) links
# libGL and glib, which slim does not have.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 techshop \
 && useradd --system --uid 10001 --gid techshop --home-dir /home/techshop --create-home \
      --shell /usr/sbin/nologin techshop \
 && mkdir -p /data \
 && chown techshop:techshop /data

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TECHSHOP_WEB_HOST=0.0.0.0 \
    TECHSHOP_DATA_DIR=/data

# the moderation stages load in this image (cv2 finds its libraries)
RUN python -c "import cv2, rapidocr_onnxruntime, onnxruntime"

USER techshop
WORKDIR /home/techshop
VOLUME ["/data"]

# The Faust web monitor: /health, /ready, /metrics, /dashboard.
EXPOSE 6066

# slim has no curl: ask /health with the standard library (honours TECHSHOP_WEB_PORT).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('TECHSHOP_WEB_PORT', '6066'), timeout=4)" || exit 1

ENTRYPOINT ["techshop"]
CMD ["worker"]
