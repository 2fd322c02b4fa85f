"""The dashboard's settings, checked once when the app is made."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Sequence

import attrs

from ..core._errors import ConfigurationError

#: Shorter tokens are refused: a token is the one secret between the network and the store.
MIN_TOKEN_CHARS = 16
#: How long an operator name may be (it is written into the audit trail on every action).
MAX_NAME_CHARS = 100
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


@attrs.frozen
class DashboardConfig:
    """What ``create_app`` was given, checked.

    ``token``: the shared secret the login form asks for; ``None`` means no login (keep
    it on loopback, or behind the host application's own authentication).
    ``operator``: the name actions are recorded with when there is no login, and the
    name the login form suggests. ``allowed_hosts``: the ``Host`` headers accepted
    (``None``: any); ``durably dashboard`` on loopback without a token accepts only
    loopback names, which stops DNS-rebinding pages from reaching it.
    """

    token: str | None = None
    operator: str | None = None
    utc: bool = False
    stuck_after_s: float = 3600.0
    page_size: int = 50
    live_interval_s: float = 1.0
    session_max_age_s: float = 12 * 3600.0
    allowed_hosts: tuple[str, ...] | None = None
    title: str = "durably"

    def __attrs_post_init__(self) -> None:
        if self.token is not None and len(self.token) < MIN_TOKEN_CHARS:
            raise ConfigurationError(
                f"the dashboard token must be at least {MIN_TOKEN_CHARS} characters; make "
                "one with: python -c 'import secrets; print(secrets.token_urlsafe(24))'"
            )
        if self.operator is not None:
            check_name(self.operator)
        if not 1 <= self.page_size <= 1000:
            raise ConfigurationError("page_size must be between 1 and 1000")
        for name, value in (
            ("stuck_after_s", self.stuck_after_s),
            ("live_interval_s", self.live_interval_s),
            ("session_max_age_s", self.session_max_age_s),
        ):
            if not value > 0:
                raise ConfigurationError(f"{name} must be a positive number of seconds")

    @property
    def default_operator(self) -> str:
        """Who acts when nobody logged in: ``--operator``, else ``dashboard:$USER``."""
        return self.operator or f"dashboard:{os.environ.get('USER', 'unknown')}"


def check_name(name: str) -> str:
    """An operator name as it goes into the audit trail: trimmed, printable, not empty."""
    cleaned = name.strip()
    if not cleaned or len(cleaned) > MAX_NAME_CHARS or not cleaned.isprintable():
        raise ConfigurationError(
            f"an operator name is 1 to {MAX_NAME_CHARS} printable characters, got {name!r}"
        )
    return cleaned


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h``, ``1d`` as seconds (the stuck threshold)."""
    match = _DURATION.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise ConfigurationError(
            f"a duration is a positive number with an optional unit s, m, h or d "
            f"(e.g. 90s, 15m, 2h), not {text!r}"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


LOOPBACK_NAMES: Sequence[str] = ("localhost", "127.0.0.1", "::1", "[::1]")
