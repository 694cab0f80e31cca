"""The worker's token from a file (compose's `influxdb-tokens` writes it): read when the sink connects,
so a file written after the worker started counts, and read again after InfluxDB refused the token
(a new token for a new bucket), against a local HTTP server that checks the Authorization header."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web
from pydantic import ValidationError

from pipeline.errors import SinkUnavailable
from pipeline.settings import InfluxSettings
from pipeline.sinks.influx import InfluxSink
from wattstream.embedded.servers import free_port


def test_the_token_file_is_read_when_connecting_and_again_after_a_refusal(tmp_path: Path) -> None:
    token = tmp_path / "worker.token"
    seen: list[str] = []

    async def write(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        await request.read()
        return web.Response(status=204 if seen[-1] == "Token new-token" else 401)

    async def scenario() -> list[str]:
        app = web.Application()
        app.router.add_post("/api/v2/write", write)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        sink = InfluxSink(InfluxSettings(url=f"http://127.0.0.1:{port}", token_file=token))
        outcomes = []
        try:
            for content in (None, "old-token\n", "new-token\n"):
                if content is not None:
                    token.write_text(content)
                try:
                    await sink.write_lines(["m v=1 1"])
                    outcomes.append("written")
                except SinkUnavailable as exc:
                    outcomes.append(str(exc))
        finally:
            await sink.close()
            await runner.cleanup()
        return outcomes

    outcomes = asyncio.run(scenario())
    assert "token file unreadable" in outcomes[0]  # not written yet: transient, retried
    assert "401" in outcomes[1]
    assert outcomes[2] == "written"
    assert seen == ["Token old-token", "Token new-token"]


def test_a_token_or_a_token_file_not_both(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not both"):
        InfluxSettings(token="t", token_file=tmp_path / "worker.token")
