# The wattstream image: worker, bridges and simulators (one image, the command picks the role).
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 wattstream
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY bridges ./bridges
RUN pip install --no-cache-dir . && rm -rf /root/.cache
USER wattstream
WORKDIR /home/wattstream
ENTRYPOINT ["wattstream"]
CMD ["worker"]
