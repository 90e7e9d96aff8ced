"""IF.coordinator for Python: the seed's ``IFCoordinator`` and ``EventBus`` API
over the ``ifc serve`` HTTP service, plus a lower-level :class:`Client`.

Async like the seed; ``ifc_client.sync`` has blocking facades.
"""

from .client import Client, SwarmClient
from .config import Connection, resolve
from .coordinator import IFCoordinator
from .errors import (
    ERROR_CLASSES,
    BlockerNotFoundError,
    StoreLimitError,
    AlreadyAcknowledgedError,
    BlockerResolvedError,
    ClaimLapsedError,
    ClaimReplacedError,
    ContendedError,
    NotClaimedError,
    NotDeadError,
    OutcomeUnknownError,
    SwarmTakenError,
    TaskClaimedError,
    TaskExistsError,
    TaskFinishedError,
    CompactedError,
    ConflictError,
    CoordinatorConnectionError,
    CoordinatorError,
    FencedError,
    ForbiddenError,
    IncapableError,
    InternalError,
    InvalidArgumentError,
    InvalidBodyError,
    MalformedJsonError,
    MethodNotAllowedError,
    NotFoundError,
    NotOwnerError,
    PayloadTooLargeError,
    RequestTimeoutError,
    OverloadedError,
    SwarmNotRegisteredError,
    TaskNotFoundError,
    TooManySwarmsError,
    UnauthorizedError,
    UnavailableError,
    UnsupportedMediaTypeError,
)
from .event_bus import EventBus, WatchEvent

__version__ = "0.1.0"

__all__ = [
    "IFCoordinator", "EventBus", "WatchEvent", "Client", "SwarmClient", "Connection", "resolve",
    "CoordinatorError", "TaskNotFoundError", "ERROR_CLASSES", "BlockerNotFoundError",
    "CompactedError", "ConflictError", "CoordinatorConnectionError", "FencedError",
    "ForbiddenError", "IncapableError", "InternalError", "InvalidArgumentError",
    "InvalidBodyError", "MalformedJsonError", "MethodNotAllowedError", "NotFoundError",
    "NotOwnerError", "PayloadTooLargeError", "RequestTimeoutError", "OverloadedError",
    "SwarmNotRegisteredError", "TooManySwarmsError",
    "UnauthorizedError", "UnavailableError", "UnsupportedMediaTypeError",
    "AlreadyAcknowledgedError", "BlockerResolvedError", "ClaimLapsedError", "ClaimReplacedError", "ContendedError", "NotClaimedError",
    "NotDeadError", "StoreLimitError", "OutcomeUnknownError", "SwarmTakenError", "TaskClaimedError", "TaskExistsError", "TaskFinishedError",
]
