"""A token bucket of events per tenant: one tenant's flood is refused, others' are not.

Each tenant's bucket fills at `rate` events per second up to `burst`; a request takes
as many tokens as it has events, or is refused with the seconds until it would fit.
Refusing costs a dict lookup, so a flooding tenant never slows another's requests.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class TenantRateLimit:
    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant -> (tokens, at)

    def _tokens(self, tenant: str, now: float) -> float:
        tokens, at = self._buckets.get(tenant, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def admit(self, tenant: str, events: int) -> float:
        """0 when the events are admitted (tokens taken), else seconds until they fit."""
        now = self._clock()
        tokens = self._tokens(tenant, now)
        if tokens >= events:
            self._buckets[tenant] = (tokens - events, now)
            return 0.0
        self._buckets[tenant] = (tokens, now)
        return (min(events, self.burst) - tokens) / self.rate

    def refuse_early(self, tenant: str, largest: int) -> float:
        """Before a body is read: 0 while the tenant's bucket holds a token, else the
        seconds until it holds `largest` (the most events a request may carry), so that
        the refused request, whatever its size, fits once that wait is over."""
        tokens = self._tokens(tenant, self._clock())
        return 0.0 if tokens >= 1 else (min(largest, self.burst) - tokens) / self.rate


def retry_after(seconds: float) -> str:
    """A Retry-After value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
