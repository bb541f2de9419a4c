"""What a ``@request`` method sends every time: :class:`Call`, made once per method."""

from __future__ import annotations

from dataclasses import dataclass, field

from vyked.core.client import NOT_IDEMPOTENT, RetryPolicy


@dataclass(frozen=True, slots=True)
class Call:
    """The part of a request that is the same on every call of one ``@request`` method: the
    endpoint, the caller's timeout and the retry policy. Its sender holds one, made when the
    client class is defined; only the parameters, the entity and the caller's name change from
    call to call."""

    endpoint: str
    timeout: float
    """Seconds the caller waits for the answer, retries included."""
    policy: RetryPolicy = NOT_IDEMPOTENT
    attempt_timeout: float = field(init=False)
    """Seconds one attempt may take: the policy's, else the whole :attr:`timeout`."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "attempt_timeout", self.policy.attempt_timeout or self.timeout)
