"""The command table of the console and the CLI: every channel command, declared once.

A ``Command`` row names the command (the CLI's ``python -m bot NAME``, the console's
``/SPELLING``s), declares its arguments once (``bot.adapters.syntax``), gives its help and its
handler: the handler calls the core facade and returns the text of a renderer
(``bot.adapters.text``). The console parses and lists (``/help``) these rows; the CLI builds its
argparse subcommands from them. Discord's cogs render the same core values as embeds.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bot.adapters.progress_bar import ProgressBar
from bot.adapters.syntax import (
    CONSOLE_MEMBER,
    Call,
    Command,
    Confirmation,
    Flag,
    Option,
    Positional,
    Reply,
)
from bot.adapters.text import (
    card_text,
    channel_stats_text,
    continuation_text,
    deletion_text,
    import_text,
    member_data_json,
    removal_text,
    stories_text,
    trained_text,
    training_failed_text,
    versions_text,
)
from bot.core.api import ContinueOptions, TrainOptions
from bot.display import format_bytes
from bot.errors import UserError

# -- handlers: facade call, then renderer ---------------------------------------------------


def _given(call: Call, *names: str) -> dict[str, Any]:
    """The options the user gave (the core's defaults stand for the others)."""
    return {name: call.args[name] for name in names if call.args[name] is not None}


async def _train(call: Call) -> Reply:
    path: Path = call.args["file"]
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        return Reply(f"Cannot read {path}: {exc.strerror}", ok=False)
    options = TrainOptions(**_given(call, "mode", "layers", "n_input", "seed", "max_seconds"))
    # An export file is imported by train itself (the job is done at once, result.imported).
    job = await call.service.train(
        call.ref, CONSOLE_MEMBER, path.name, data, options, on_progress=ProgressBar(call.out)
    )
    result = await call.service.wait_for_job(job.job_id)
    if result.state == "done" and (result.imported or result.figures is not None):
        return Reply(trained_text(job, result, path.name))
    return Reply(training_failed_text(job, result), ok=False)


async def _continue(call: Call) -> str:
    options = ContinueOptions(**_given(call, "length", "temperature", "seed", "top_k"))
    prompt = " ".join(call.args["words"])
    return continuation_text(await call.service.continue_story(call.ref, prompt, options))


async def _status(call: Call) -> str:
    return card_text(await call.service.story_card(call.ref), call.label)


async def _stories(call: Call) -> str:
    return stories_text(await call.service.figures.stories(call.ref), call.label)


async def _versions(call: Call) -> str:
    return versions_text(await call.service.figures.versions(call.ref), call.label)


async def _stats(call: Call) -> str:
    return channel_stats_text(await call.service.figures.stats(call.ref), call.label)


async def _remove(call: Call) -> Reply | str:
    """Remove a story; in the CLI, a retraining it queues is shown through to its end."""
    waits = call.runs_to_end
    removal = await call.service.remove_story(
        call.ref,
        CONSOLE_MEMBER,
        call.args["story_id"],
        on_progress=ProgressBar(call.out) if waits else None,
    )
    if removal.retraining is None or not waits:
        return removal_text(removal)
    call.out.write(removal_text(removal) + "\n")
    result = await call.service.wait_for_job(removal.retraining.job_id)
    ended = f"Retraining {result.state}" + (f": {result.error}" if result.error else ".")
    return Reply(ended, ok=result.state == "done")


async def _rollback(call: Call) -> str:
    rolled = await call.service.rollback(call.ref, CONSOLE_MEMBER, call.args["version"])
    return f"Version {rolled.version} is active."


async def _export(call: Call) -> str:
    filename, data = await call.service.export_channel(call.ref, CONSOLE_MEMBER)
    target: Path = call.args["out"] or Path(filename)
    await asyncio.to_thread(target.write_bytes, data)
    return f"Wrote {target} ({format_bytes(len(data))})."


async def _import(call: Call) -> str:
    path: Path = call.args["file"]
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        raise UserError(f"Cannot read {path}: {exc.strerror}") from None
    return import_text(await call.service.import_channel(call.ref, CONSOLE_MEMBER, data))


async def _forget(call: Call) -> str:
    await call.service.forget(call.ref, CONSOLE_MEMBER)
    return f"Forgot channel {call.label}."


async def _forget_user(call: Call) -> Reply | str:
    """``delete_user_data``; in the CLI, each retraining it queues through to its end."""
    user_id = call.args["user_id"]
    deleted = await call.service.delete_user_data(user_id, call.args["server"])
    text = deletion_text(deleted, f"user {user_id}")
    if not deleted.retrainings or not call.runs_to_end:
        return text
    call.out.write(text + "\n")
    ended = []
    for job in deleted.retrainings:
        result = await call.service.wait_for_job(job.job_id)
        ended.append(f"Retraining #{job.job_id} {result.state}" + (
            f": {result.error}" if result.error else "."))  # fmt: skip
    return Reply("\n".join(ended), ok=all(" done" in line for line in ended))


async def _user_data(call: Call) -> str:
    data = member_data_json(
        await call.service.member_data(call.args["user_id"], call.args["server"])
    )
    target: Path | None = call.args["out"]
    if target is None:
        return data.decode("utf-8")
    await asyncio.to_thread(target.write_bytes, data)
    return f"Wrote {target} ({format_bytes(len(data))})."


async def _cancel(call: Call) -> str:
    progress = await call.service.cancel(call.ref, CONSOLE_MEMBER)
    return "Nothing to cancel." if progress is None else "Cancelling."


async def _plot(call: Call) -> str:
    png = await call.service.training_plot(call.ref)
    if png is None:
        raise UserError("No trained model to plot.")
    await asyncio.to_thread(call.args["file"].write_bytes, png)
    return f"Wrote {call.args['file']}."


# -- argument types -------------------------------------------------------------------------


def story_number(text: str) -> int:
    """``12`` or ``#12``, as ``stories`` shows it."""
    return int(text.removeprefix("#"))


def version_number(text: str) -> int:
    """``3`` or ``v3``, as ``versions`` shows it."""
    return int(text.removeprefix("v"))


SEED = Option("seed", "random seed, for a repeatable training", int, "1")
FORGET = Confirmation(
    question="Delete every story, model and job of channel {channel}?",
    refusal="forget deletes every story, model and job of channel {channel}: add --yes to "
    "confirm (stdin is not a terminal, so I cannot ask).",
    declined="Nothing was deleted.",
)

FORGET_USER = Confirmation(
    question="Delete the uploads and history messages of user {user_id} (server: {server}, "
    "None: every server) and the models trained on them?",
    refusal="forget-user deletes the uploads and history messages of user {user_id}: add --yes "
    "to confirm (stdin is not a terminal, so I cannot ask).",
    declined="Nothing was deleted.",
)
MEMBER_ARGUMENTS = (
    Positional("user_id", "the member's Discord user id", "USER_ID", int),
    Option("server", "one Discord server only (default: every server)", int, "SERVER_ID"),
)

# -- the table ------------------------------------------------------------------------------

COMMANDS: tuple[Command, ...] = (
    Command(
        "train",
        ("train",),
        "train a story file into a channel (an export file is imported)",
        _train,
        (
            Positional("file", "a UTF-8 text file, or an export file (.zip)", "FILE", Path),
            Option("mode", "train on all the channel's stories", str, "append", "--append"),
            Option("layers", "LSTM layers (1 or 2; default from the config)", int, "2"),
            Option("n_input", "symbols the model reads to predict the next (default 3)", int, "4"),
            SEED,
            Option("max_seconds", "stop training after this many seconds", float, "60"),
        ),
        trains=True,
    ),
    Command(
        "continue",
        ("continue",),
        "continue a prompt with the channel's model",
        _continue,
        (
            Positional("words", "the prompt", "WORDS", many=True),
            Option("length", "words and punctuation marks to add (default 32)", int, "32"),
            Option(
                "temperature",
                "0 picks the likeliest word; higher values sample more freely (default 0.8)",
                float,
                "0.8",
            ),
            Option("seed", "random seed for sampling (temperature > 0)", int, "7"),
            Option("top_k", "sample only among the K likeliest words", int, "10"),
        ),
    ),
    Command(
        "status",
        ("story show", "story card", "status", "story"),
        "show the channel's story card",
        _status,
    ),
    Command("stories", ("story list", "stories"), "list the channel's stories", _stories),
    Command(
        "stats",
        ("story stats",),
        "the channel's figures: symbols per story, vocabulary, versions, trainings, replies",
        _stats,
    ),
    Command(
        "remove",
        ("story remove",),
        "remove a story and the models trained on it",
        _remove,
        (Positional("story_id", "the story's number (stories)", "ID", story_number),),
        trains=True,
    ),
    Command("versions", ("story versions", "versions"), "list the kept model versions", _versions),
    Command(
        "rollback",
        ("story rollback", "rollback"),
        "make a kept model version active",
        _rollback,
        (
            Positional(
                "version",
                "the version (default: the previous one)",
                "VERSION",
                version_number,
                optional=True,
            ),
        ),
    ),
    Command(
        "export",
        ("story export",),
        "write the channel's export file",
        _export,
        (
            Positional(
                "out",
                "file to write (default: <channel>-vN.fabulist.zip)",
                "FILE",
                Path,
                optional=True,
                cli_option="--out",
            ),
        ),
    ),
    Command(
        "import",
        ("story import",),
        "restore an export file into the channel",
        _import,
        (Positional("file", "an export file (.fabulist.zip)", "FILE", Path),),
    ),
    Command(
        "forget",
        ("forget",),
        "delete the channel's stories, models and jobs",
        _forget,
        (Flag("yes", "do not ask for confirmation"),),
        confirm=FORGET,
    ),
    Command(
        "forget-user",
        ("privacy forget-user",),
        "delete a member's uploads and history messages, the models trained on them; retrain",
        _forget_user,
        (*MEMBER_ARGUMENTS, Flag("yes", "do not ask for confirmation")),
        confirm=FORGET_USER,
        trains=True,
    ),
    Command(
        "user-data",
        ("privacy user-data",),
        "everything fabulist keeps of a member, as JSON (/privacy mydata)",
        _user_data,
        (
            *MEMBER_ARGUMENTS,
            Positional(
                "out",
                "file to write (default: print it)",
                "FILE",
                Path,
                optional=True,
                cli_option="--out",
            ),
        ),
    ),
    Command(
        "cancel",
        ("cancel",),
        "cancel the channel's queued or running training",
        _cancel,
        cli=False,  # a CLI process trains only in its own train or remove command
    ),
    Command(
        "plot",
        ("plot",),
        "write the active model's loss and accuracy per epoch to a PNG file",
        _plot,
        (Positional("file", "the PNG file to write", "FILE.png", Path),),
        cli=False,
    ),
)

CONSOLE_SPELLINGS = {spelling: command for command in COMMANDS for spelling in command.console}
# The console's command groups: /story SUB.
CONSOLE_GROUPS = {s.split()[0] for s in CONSOLE_SPELLINGS if " " in s}
