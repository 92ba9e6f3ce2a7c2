"""Error types of the bot.

``UserError`` and its subclasses carry a friendly ``.message`` that adapters show to the person who
made the request (ephemerally on Discord). Anything that is not a ``UserError`` is a bug or an
operational fault: adapters log it with a reference code and show a generic reply.
"""

from __future__ import annotations

from typing import Self

from bot.messages import N_


class ConfigError(Exception):
    """The configuration file or environment is invalid; the message names the setting."""


class StorageError(Exception):
    """The database cannot be opened or migrated (not a user's fault)."""


class UserError(Exception):
    """A request that cannot be served as asked; ``message`` is safe to show to the user.

    ``message`` is English; ``template`` and ``params`` are the same message before its
    ``{name}`` placeholders were filled in, which an adapter may look up in its language (a
    parameter that is a ``bot.messages.Phrase`` too). Never build a template with an f-string:
    ``tests/service/test_catalogues.py`` fails on one.
    """

    def __init__(self, template: str, /, **params: object) -> None:
        message = template.format(**params) if params else template
        super().__init__(message)
        self.message = message
        self.template = template
        self.params = params

    @classmethod
    def untranslated(cls, text: str) -> Self:
        """An error whose words come from outside the catalogue (the model's): English in every
        language."""
        return cls("{text}", text=text)


class ShuttingDown(UserError):
    """The service is closing: no new request is taken."""

    def __init__(self) -> None:
        super().__init__(N_("The bot is shutting down; try again in a minute."))


class StorageUnavailable(StorageError, UserError):
    """The database refused a write (disk full, read-only, I/O error); nothing was changed.

    A ``UserError`` too, so adapters answer with its clear message instead of a bug reply.
    """


class TooManyStories(StorageError, UserError):
    """An import would take the channel over its story limit (checked in the store's
    transaction, with the stories it already holds); nothing was changed."""

    def __init__(self, held: int, new: int, limit: int) -> None:
        super().__init__(
            N_(
                "this channel holds {held} stories and the file {new} new ones; "
                "the limit is {limit}"
            ),
            held=held,
            new=new,
            limit=limit,
        )


class InvalidUpload(UserError):
    """The uploaded story is empty, too large, not text, or too short."""


class InvalidOption(UserError):
    """An option (length, temperature, seed, layers, prompt...) is out of range."""


class NoModel(UserError):
    """The channel has no trained model yet."""


class NotFound(UserError):
    """A story, model version or job that the request names does not exist in this channel."""


class Busy(UserError):
    """The channel already has a training queued or running."""

    def __init__(
        self, template: str, job_id: int, queue_position: int | None, /, **params: object
    ) -> None:
        super().__init__(template, **params)
        self.job_id = job_id
        self.queue_position = queue_position


class TrainingElsewhere(Busy):
    """Another live process (a second CLI, the bot) has an open training in the channel."""

    def __init__(self, job_id: int) -> None:
        super().__init__(
            N_(
                "This channel is already training (job #{job}, in another process). "
                "Wait for it or cancel it first."
            ),
            job_id,
            None,
            job=job_id,
        )


class NotAllowed(UserError):
    """The member lacks the right for this action (train, forget, cancel someone else's job)."""


class QueueFull(UserError):
    """The global training queue is at its configured length."""


class CoolingDown(UserError):
    """The member asked again before their cooldown ended."""

    def __init__(self, template: str, retry_after: float, /, **params: object) -> None:
        super().__init__(template, **params)
        self.retry_after = retry_after
