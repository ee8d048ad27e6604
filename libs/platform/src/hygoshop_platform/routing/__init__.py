"""The router's client for adapters: which provider to call, fallbacks, outcome reports.

    router = RouterClient(os.environ["ROUTER_GRPC_TARGET"])

    async def send(attempt: Attempt) -> str:
        provider = PROVIDERS[attempt.provider_id]
        try:
            return await provider.send(message)
        except VendorRateLimited as exc:
            raise ProviderCallError(ResultClass.RATE_LIMITED, retry_after_seconds=exc.wait)

    message_id = await router.execute("email", "send_email", send)

The tenant is the current request's caller (`hygoshop_platform.tenancy.current_caller`),
or the `caller=` given explicitly.
"""

from hygoshop_platform.routing._client import RouterClient
from hygoshop_platform.routing._types import (
    AllProvidersFailed,
    Attempt,
    FailedAttempt,
    NoProviderAvailable,
    ProviderCallError,
    ResultClass,
    RetryBudget,
    RouterUnavailable,
    RoutingError,
    result_for_status,
)

__all__ = [
    "AllProvidersFailed",
    "Attempt",
    "FailedAttempt",
    "NoProviderAvailable",
    "ProviderCallError",
    "ResultClass",
    "RetryBudget",
    "RouterClient",
    "RouterUnavailable",
    "RoutingError",
    "result_for_status",
]
