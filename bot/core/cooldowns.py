"""Per-member cooldown of /continue: charged up front, refunded when the request fails."""

from __future__ import annotations

import time

from bot.errors import CoolingDown
from bot.messages import Number

Charge = tuple[float | None, float]


class Cooldowns:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._ready: dict[int, float] = {}

    def charge(self, user_id: int) -> Charge | None:
        """CoolingDown if the member must wait; else start the cooldown and return
        (the previous ready time, the new one) for :meth:`refund`."""
        if self.seconds <= 0:
            return None
        now = time.monotonic()
        previous = self._ready.get(user_id)
        if previous is not None and now < previous:
            wait = previous - now
            raise CoolingDown(
                "Slow down: try again in {seconds} s.",
                wait,
                seconds=Number(wait, 1, grouped=False),
            )
        self._ready[user_id] = now + self.seconds
        if len(self._ready) > 10_000:
            self._ready = {u: t for u, t in self._ready.items() if t > now}
        return previous, now + self.seconds

    def refund(self, user_id: int, charge: Charge) -> None:
        previous, charged = charge
        if self._ready.get(user_id) != charged:
            return  # a later request charged it meanwhile
        if previous is None:
            del self._ready[user_id]
        else:
            self._ready[user_id] = previous
