"""What the command modules share: `add_command` (a subcommand's parser, its `--help` listing the settings it
reads, generated from `pipeline.settings.Settings`), `kafka_reachable` (a Kafka client's wait for Kafka) and
`run_once_kafka_answers` (a Kafka client's command: that wait, then its work until a stop signal)."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import to_json

from pipeline.brokers import KafkaSettings
from pipeline.retry import first_of
from pipeline.settings import Settings
from wattstream.signals import run_until_signal

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

Run = Callable[[Settings, argparse.Namespace], int]  # a command: exit status


def add_command(sub: Subparsers, name: str, *, help: str, run: Run, settings: Iterable[str],
                description: str | None = None, logs: bool = True) -> argparse.ArgumentParser:
    """The parser of one subcommand: `--help` ends with the WATTSTREAM_* settings it reads (`settings_help`);
    `args.run(settings, args)` runs it (after logging is set up, unless `logs` is False); `args.parser` is
    this parser (its errors show its usage)."""
    parser = sub.add_parser(name, help=help, description=description or help, epilog=settings_help(*settings),
                            formatter_class=_Formatter)
    parser.set_defaults(run=run, logs=logs, parser=parser)
    return parser


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """The description and the settings as written; each option with its default, where it has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.option_strings and action.default is not None and action.default is not False \
                and action.default != argparse.SUPPRESS and "%(default)" not in text:
            text += " (default %(default)s)"
        return text


def settings_help(*names: str) -> str:
    """Each environment variable of these settings (a section of `Settings`, `kafka`; one field of one,
    `worker.log_level`; or a top-level setting, `meters_file`) with its default, from the models themselves.
    A secret is named, never shown."""
    prefix = Settings.model_config.get("env_prefix", "")
    nested = Settings.model_config.get("env_nested_delimiter") or "_"
    rows: list[tuple[str, str]] = []
    for name in names:
        section, _, only = name.partition(".")
        field = Settings.model_fields[section]
        model = field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            fields = [(key, info) for key, info in model.model_fields.items() if not only or key == only]
            assert fields, f"no setting {name}"
            rows += [(f"{prefix}{section}{nested}{key}".upper(), _described(info)) for key, info in fields]
        else:
            rows.append((f"{prefix}{section}".upper(), _described(field)))
    width = max(len(variable) for variable, _ in rows)
    return "settings (environment variables, or a .env file in the working directory):\n" + "\n".join(
        f"  {variable:<{width}}  {text}" for variable, text in rows)


def _described(field: FieldInfo) -> str:
    if SecretStr in (field.annotation, *get_args(field.annotation)):
        return "(secret)"
    default = field.get_default(call_default_factory=True)
    choices = [get_args(t) for t in (field.annotation, *get_args(field.annotation)) if get_origin(t) is Literal]
    text = "(unset by default)" if default is None else f"(default {_shown(default)})"
    return f"{text}; one of {', '.join(map(str, choices[0]))}" if choices else text


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str | Path | int | float):
        return str(value) or '""'
    return to_json(value).decode()


def run_once_kafka_answers(kafka: KafkaSettings, body: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """A Kafka client's command: wait for Kafka (`kafka_reachable`), then `body(stop)` until a stop signal
    (`wattstream.signals.run_until_signal`). Exit status 0."""

    async def main(stop: asyncio.Event) -> None:
        if await kafka_reachable(kafka, stop):
            await body(stop)

    run_until_signal(main)
    return 0


async def kafka_reachable(kafka: KafkaSettings, stop: asyncio.Event) -> bool:
    """Wait until Kafka answers, logging that it waits (`pipeline.kafka.ensure_topics_when_reachable`), or
    until `stop` is set: True when Kafka answered first."""
    from pipeline.kafka import ensure_topics_when_reachable

    waiting = asyncio.create_task(ensure_topics_when_reachable(kafka.connection(), [], kafka.partitions))
    await first_of(waiting, stop.wait())
    if waiting.cancelled():
        return False
    waiting.result()  # (anything but Kafka not answering: raised)
    return not stop.is_set()
