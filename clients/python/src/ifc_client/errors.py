"""Exceptions: one class per stable error code of the service.

The server answers every failure as ``{"code": ..., "message": ...}``. Each
known code has its own class, all subclasses of the seed's
:class:`CoordinatorError`. A code this package does not know yet (the server
may add codes) becomes a plain :class:`CoordinatorError` carrying that code, so
new codes never break a client.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Type


class CoordinatorError(Exception):
    """Any failure the coordinator reports (the seed's base exception).

    ``code`` is the service's stable error code (``None`` for failures this
    package detects itself before sending anything), ``status`` the HTTP status,
    ``index`` the item at fault when a batch was refused for one of its items.
    """

    code: Optional[str] = None

    def __init__(
        self,
        message: str,
        *,
        code: Optional[str] = None,
        status: Optional[int] = None,
        index: Optional[int] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.status = status
        self.index = index

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.code else self.message


class InvalidArgumentError(CoordinatorError, ValueError):
    """A field is malformed (400)."""

    code = "invalid_argument"


class MalformedJsonError(CoordinatorError):
    """The body is not valid JSON (400)."""

    code = "malformed_json"


class InvalidBodyError(CoordinatorError, ValueError):
    """The body is JSON of the wrong shape (422)."""

    code = "invalid_body"


class UnauthorizedError(CoordinatorError):
    """No or wrong bearer token (401)."""

    code = "unauthorized"


class ForbiddenError(CoordinatorError):
    """The token is valid but not for this operation (403)."""

    code = "forbidden"


class IncapableError(CoordinatorError):
    """The swarm lacks the task's required capabilities (403)."""

    code = "incapable"


class NotFoundError(CoordinatorError):
    """No such route (404): usually a server older than this client."""

    code = "not_found"


class TaskNotFoundError(CoordinatorError):
    """No such task (404) (the seed's exception)."""

    code = "task_not_found"


class BlockerNotFoundError(CoordinatorError):
    """No such blocker (404)."""

    code = "blocker_not_found"


class CompactedError(CoordinatorError):
    """A stream's start revision is older than the store's history (410)."""

    code = "compacted"


class SwarmNotRegisteredError(CoordinatorError):
    """The swarm is not registered (404)."""

    code = "swarm_not_registered"


class MethodNotAllowedError(CoordinatorError):
    """The route exists but not with this method (405)."""

    code = "method_not_allowed"


class ConflictError(CoordinatorError):
    """The operation conflicts with the current state (409)."""

    code = "conflict"


class FencedError(ConflictError):
    """The claim token is stale: the claim lapsed or was replaced (409)."""

    code = "fenced"


class NotOwnerError(ConflictError):
    """Another swarm holds the task (409)."""

    code = "not_owner"


class ContendedError(ConflictError):
    """Lost a race; nothing changed and the same call may succeed on retry (409)."""

    code = "contended"


class SwarmTakenError(ConflictError):
    """The swarm id is live under another owner (409)."""

    code = "swarm_taken"


class TaskExistsError(ConflictError):
    """A task with this id and different content exists (409)."""

    code = "task_exists"


class TaskFinishedError(ConflictError):
    """The task is finished (completed, dead or cancelled) (409)."""

    code = "task_finished"


class TaskClaimedError(ConflictError):
    """The task is claimed, so it cannot be pushed (409)."""

    code = "task_claimed"


class AlreadyAcknowledgedError(ConflictError):
    """The push was acknowledged already (409)."""

    code = "already_acknowledged"


class BlockerResolvedError(ConflictError):
    """The blocker is resolved (409)."""

    code = "blocker_resolved"


class ClaimLapsedError(FencedError):
    """The claim's lease ran out before this call; the message says what became of the task (409)."""

    code = "claim_lapsed"


class ClaimReplacedError(FencedError):
    """A newer claim holds the task (409)."""

    code = "claim_replaced"


class NotClaimedError(ConflictError):
    """The task is not claimed (409)."""

    code = "not_claimed"


class NotDeadError(ConflictError):
    """Only a dead-lettered task can be retried (409)."""

    code = "not_dead"


class StoreLimitError(CoordinatorError, ValueError):
    """The request would pass a store limit other than value size (422)."""

    code = "store_limit"

class RequestTimeoutError(CoordinatorError):
    """The request head or body did not arrive within the server's timeout (408)."""

    code = "request_timeout"


class OverloadedError(CoordinatorError):
    """The server is at its connection limit; nothing was read; retry (503)."""

    code = "overloaded"


class PayloadTooLargeError(CoordinatorError):
    """The body is too large (413)."""

    code = "payload_too_large"


class UnsupportedMediaTypeError(CoordinatorError):
    """The body is not ``application/json`` (415)."""

    code = "unsupported_media_type"


class TooManySwarmsError(CoordinatorError):
    """The swarm limit is reached (429)."""

    code = "too_many_swarms"


class UnavailableError(CoordinatorError):
    """The store cannot be reached; retry (503)."""

    code = "unavailable"


class OutcomeUnknownError(CoordinatorError):
    """The store may or may not have applied the write (503): read before retrying."""

    code = "outcome_unknown"

class InternalError(CoordinatorError):
    """Anything else (500)."""

    code = "internal"


class CoordinatorConnectionError(CoordinatorError, ConnectionError):
    """The server cannot be reached (no code: nothing answered).

    Also a builtin :class:`ConnectionError`, which the seed's
    ``EventBus.connect`` raised.
    """


ERROR_CLASSES: Dict[str, Type[CoordinatorError]] = {
    cls.code: cls  # type: ignore[misc]
    for cls in (
        InvalidArgumentError,
        MalformedJsonError,
        InvalidBodyError,
        UnauthorizedError,
        ForbiddenError,
        IncapableError,
        NotFoundError,
        TaskNotFoundError,
        BlockerNotFoundError,
        CompactedError,
        SwarmNotRegisteredError,
        MethodNotAllowedError,
        ConflictError,
        FencedError,
        NotOwnerError,
        ContendedError,
        SwarmTakenError,
        TaskExistsError,
        TaskFinishedError,
        TaskClaimedError,
        AlreadyAcknowledgedError,
        BlockerResolvedError,
        ClaimLapsedError,
        ClaimReplacedError,
        NotClaimedError,
        NotDeadError,
        PayloadTooLargeError,
        RequestTimeoutError,
        OverloadedError,
        StoreLimitError,
        UnsupportedMediaTypeError,
        TooManySwarmsError,
        UnavailableError,
        OutcomeUnknownError,
        InternalError,
    )
}


def error_from_response(status: int, body: Any) -> CoordinatorError:
    """The exception for an error answer (``body`` is the decoded JSON, if any)."""
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        code = body["code"]
        message = str(body.get("message", ""))
        cls = ERROR_CLASSES.get(code, CoordinatorError)
        index = body.get("index")
        return cls(message, code=code, status=status, index=index if isinstance(index, int) else None)
    return CoordinatorError(f"HTTP {status}: {str(body)[:200]}", status=status)
