"""Objects handed to tests: interaction handles, rate-limit injections, violations."""

# ruff: noqa: ASYNC109  # the harness API takes explicit timeouts so failures say what was awaited

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from tests.fake_discord.models import (
    FakeChannel,
    FakeGuild,
    FakeMessage,
    FakeUser,
    RecordedRequest,
)

if TYPE_CHECKING:
    from tests.fake_discord.server import FakeDiscord

T = TypeVar("T")

#: Discord interaction types
PING, APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 1, 2, 3, 4, 5

#: interaction callback types
PONG = 1
CHANNEL_MESSAGE = 4
DEFERRED_CHANNEL_MESSAGE = 5
DEFERRED_UPDATE_MESSAGE = 6
UPDATE_MESSAGE = 7
AUTOCOMPLETE_RESULT = 8
MODAL = 9


@dataclass
class Violation:
    """Something real Discord would reject or that breaks its rules (the test fails on these)."""

    kind: str
    detail: str
    request: RecordedRequest | None = None

    def __str__(self) -> str:
        where = f" [{self.request}]" if self.request else ""
        return f"{self.kind}: {self.detail}{where}"


@dataclass
class RateLimitInjection:
    """Answer the next ``count`` requests matching ``route`` with HTTP 429."""

    route: str
    count: int
    retry_after: float
    is_global: bool
    #: the requests that got a 429
    served: list[RecordedRequest] = field(default_factory=list)
    #: matching requests answered normally after the injection was used up (the retries)
    passed: list[RecordedRequest] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return self.count - len(self.served)

    def matches(self, route_key: str) -> bool:
        if self.route == "*":
            return True
        if self.route == route_key:
            return True
        # a bare template matches every method
        return route_key.split(" ", 1)[1] == self.route


class InteractionHandle:
    """One interaction the fake delivered to the bot, and everything the bot answered."""

    def __init__(
        self,
        fake: FakeDiscord,
        payload: dict[str, Any],
        *,
        user: FakeUser,
        channel: FakeChannel,
        guild: FakeGuild | None,
        target_message: FakeMessage | None = None,
    ) -> None:
        self._fake = fake
        self.payload = payload
        self.id = int(payload["id"])
        self.token: str = payload["token"]
        self.type: int = payload["type"]
        self.user = user
        self.channel = channel
        self.guild = guild
        #: the message whose component was clicked (component interactions)
        self.target_message = target_message
        self.created_at = time.monotonic()
        #: callback type the bot answered with (4, 5, 6, 7, 8, 9) or None
        self.response_type: int | None = None
        #: initial responses tried (valid or not): a second one gets 400, code 40060
        self.initial_responses = 0
        #: the callback's ``data`` object
        self.response_data: dict[str, Any] | None = None
        self.callback_request: RecordedRequest | None = None
        #: the interaction's original response message (for components: the clicked message)
        self.original: FakeMessage | None = None
        #: followup messages in creation order (the first followup after a defer is the original)
        self.followups: list[FakeMessage] = []
        self.autocomplete_choices: list[dict[str, Any]] | None = None
        self.modal: dict[str, Any] | None = None
        self.expired = False

    def __repr__(self) -> str:
        return f"<InteractionHandle id={self.id} type={self.type} response={self.response_type}>"

    @property
    def name(self) -> str | None:
        data = self.payload.get("data") or {}
        return data.get("name")

    @property
    def deferred(self) -> bool:
        return self.response_type in (DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE_MESSAGE)

    @property
    def ephemeral(self) -> bool:
        """Whether the initial response is ephemeral (flag 64 on the response)."""
        return bool(((self.response_data or {}).get("flags") or 0) & 64)

    def messages(self) -> list[FakeMessage]:
        found: list[FakeMessage] = []
        if self.original is not None and self.original is not self.target_message:
            found.append(self.original)
        found.extend(m for m in self.followups if m not in found)
        return found

    def expire(self) -> None:
        """Make the token invalid, as after Discord's 15 minutes."""
        self.expired = True

    async def _wait(self, pred: Callable[[], T | None], timeout: float, what: str) -> T:
        return await self._fake.wait_until(pred, timeout=timeout, what=f"{what} for {self!r}")

    async def wait_response(self, timeout: float = 10.0) -> int:
        """Wait for the interaction callback; returns its type."""
        return await self._wait(lambda: self.response_type, timeout, "interaction callback")

    async def wait_original(
        self,
        predicate: Callable[[FakeMessage], bool] | None = None,
        timeout: float = 10.0,
    ) -> FakeMessage:
        """Wait until the original response exists and matches ``predicate``.

        Default predicate: not 'thinking' any more (a deferred response was edited or followed up).
        """
        check = predicate or (lambda m: not m.loading)

        def ready() -> FakeMessage | None:
            msg = self.original
            return msg if msg is not None and check(msg) else None

        return await self._wait(ready, timeout, "original response")

    async def wait_followup(
        self,
        predicate: Callable[[FakeMessage], bool] | None = None,
        timeout: float = 10.0,
    ) -> FakeMessage:
        """Wait for a followup message (current state) matching ``predicate``."""
        check = predicate or (lambda m: True)

        def ready() -> FakeMessage | None:
            return next((m for m in self.followups if not m.deleted and check(m)), None)

        return await self._wait(ready, timeout, "followup")

    async def wait_message(
        self, predicate: Callable[[FakeMessage], bool], timeout: float = 10.0
    ) -> FakeMessage:
        """Wait for any message of this interaction (original or followup) matching."""

        def ready() -> FakeMessage | None:
            return next((m for m in self.messages() if not m.deleted and predicate(m)), None)

        return await self._wait(ready, timeout, "interaction message")

    async def wait_autocomplete(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait for the autocomplete result; returns ``[{"name": ..., "value": ...}, ...]``."""
        return await self._wait(lambda: self.autocomplete_choices, timeout, "autocomplete result")

    async def wait_modal(self, timeout: float = 10.0) -> dict[str, Any]:
        return await self._wait(lambda: self.modal, timeout, "modal")

    async def wait_reply(self, timeout: float = 10.0) -> FakeMessage:
        """The first visible answer: the original (once not loading) or else the first followup."""

        def ready() -> FakeMessage | None:
            if self.original is not None and not self.original.loading:
                return self.original
            return next((m for m in self.followups if not m.deleted), None)

        return await self._wait(ready, timeout, "reply")
