# The wattstream image: worker, bridges and simulators (one image, the command picks the role).
# Non-root (uid 10001, in dialout for serial dongles); /data holds the spool and local state.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 --groups dialout wattstream \
    && install -d -o wattstream -g wattstream /data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY bridges ./bridges
COPY simulators ./simulators
COPY wattstream ./wattstream
RUN pip install . && rm -rf /app/build
USER wattstream
WORKDIR /data
ENV WATTSTREAM_FILES_DIR=/data
ENTRYPOINT ["wattstream"]
CMD ["worker"]
