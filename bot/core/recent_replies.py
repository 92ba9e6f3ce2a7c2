"""What each channel's bot said lately, so that its next replies do not say it again (issue 23).

A greedy or seeded reply is reproducible and never steered by this memory; an unseeded sampled
one (the default) avoids the 4-grams of the channel's last replies. The memory is per channel
and per model version (a new model, e.g. after a member's data was forgotten, starts it
afresh), held in this process only, for the most recently answered channels.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence

from model import GenerationOptions

# Measured on a chat history (docs/continuation-quality.md): 16 replies left no 4-gram shared
# between 12 prompts' replies; 8 left up to 2.9 %.
REMEMBERED_REPLIES = 16
REMEMBERED_CHANNELS = 10_000


def steered(options: GenerationOptions) -> bool:
    """Whether a request is steered away from recent replies: sampled and unseeded."""
    return options.temperature > 0 and options.seed is None


class RecentReplies:
    """The last :data:`REMEMBERED_REPLIES` replies of each recently answered channel."""

    def __init__(
        self, replies: int = REMEMBERED_REPLIES, channels: int = REMEMBERED_CHANNELS
    ) -> None:
        self._replies = replies
        self._channels = channels
        self._memory: OrderedDict[int, tuple[int, deque[tuple[str, ...]]]] = OrderedDict()

    def of(self, channel_id: int, model_version: int) -> list[tuple[str, ...]]:
        """The channel's recent replies by this model version, oldest first."""
        held = self._memory.get(channel_id)
        if held is None or held[0] != model_version:
            return []
        return list(held[1])

    def to_avoid(
        self, channel_id: int, model_version: int, options: GenerationOptions
    ) -> list[tuple[str, ...]]:
        """What a request with ``options`` must not repeat: the channel's recent replies by this
        model version where the request is :func:`steered`, else nothing."""
        return self.of(channel_id, model_version) if steered(options) else []

    def add(self, channel_id: int, model_version: int, symbols: Sequence[str]) -> None:
        held = self._memory.pop(channel_id, None)
        if held is None or held[0] != model_version:
            held = (model_version, deque(maxlen=self._replies))
        held[1].append(tuple(symbols))
        self._memory[channel_id] = held
        while len(self._memory) > self._channels:
            self._memory.popitem(last=False)  # the channel answered longest ago
