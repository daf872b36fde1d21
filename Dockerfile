# One image for web, workers and beat; the command picks the role (see docker-compose.yml).
FROM python:3.11-slim

# Production by default: a container started without SECRET_KEY stops with a message instead of
# signing sessions with a key of its own.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 ATELIER_PRODUCTION=true \
    ATELIER_DATA_DIR=/data ATELIER_MEDIA_ROOT=/data/media ATELIER_MODELS_ROOT=/data/models

WORKDIR /app
# torch first and pinned, as in the Makefile. Build the GPU image with the CUDA wheel
# (the default on Linux x86_64) and a CPU-only image by passing
#   --build-arg TORCH_INDEX=--index-url=<your CPU wheel index>
ARG TORCH_INDEX=""
RUN pip install ${TORCH_INDEX} torch==2.13.0

COPY pyproject.toml README.md manage.py ./
COPY platform platform
COPY plugins plugins
COPY workers workers
COPY frontend frontend
# The build's SECRET_KEY exists only for this command: no key is generated into the image, where every
# container of it would share it. The volumes' mount points exist, owned by the user the image runs as
# (Docker creates a missing one owned by root, and nobody could write generated files there).
RUN pip install . && SECRET_KEY=only-for-collectstatic python manage.py collectstatic --noinput -v0 \
    && useradd --create-home --uid 1000 atelier && mkdir -p /data/media /data/models && chown -R atelier /data

USER atelier
EXPOSE 8000
CMD ["gunicorn", "atelier_platform.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--threads", "4"]
