"""Operating-system limits raised at start-up.

Every delivery in flight holds a socket, and the default soft limit of open files (often
1,024) would cap a process far below the concurrency deliveries want, while the hard limit
is usually much higher (Linux distributions: 524,288 or more). Raising the soft limit up to
the hard one needs no privilege, so the Hub does it when it starts (serve, worker and an
embedded Hub alike) and logs what it got; it never fails start-up over it.
"""

from __future__ import annotations

import logging

__all__ = ["raise_open_files_limit"]

log = logging.getLogger("hookcast")

# macOS reports an unlimited hard limit but refuses a soft limit above OPEN_MAX.
_OPEN_MAX_DARWIN = 10240


def raise_open_files_limit() -> tuple[int, int] | None:
    """Raise the soft RLIMIT_NOFILE to the hard limit. Returns (soft limit before, soft limit
    now), or None where the platform has no such limit (Windows). Never raises."""
    try:
        import resource
    except ImportError:  # Windows: no RLIMIT_NOFILE to raise
        return None
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError) as exc:
        log.warning("could not read the open files limit: %s", exc)
        return None
    if soft == hard:
        log.debug("open files limit: %s (already the hard limit)", soft)
        return soft, soft
    targets = [hard]
    if hard == resource.RLIM_INFINITY and soft < _OPEN_MAX_DARWIN:
        targets.append(_OPEN_MAX_DARWIN)
    error: Exception | None = None
    for target in targets:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as exc:
            error = exc
            continue
        log.info("open files limit raised from %s to %s", soft, _shown(target))
        return soft, target
    log.warning(
        "could not raise the open files limit from %s to %s (%s); it stays %s, which bounds "
        "the connections this process can hold",
        soft,
        _shown(hard),
        error,
        soft,
    )
    return soft, soft


def _shown(limit: int) -> str:
    import resource

    return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)
