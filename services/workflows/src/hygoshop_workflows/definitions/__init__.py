"""The built-in workflow types. Definitions import `hygoshop_workflows.runtime` only."""

from hygoshop_workflows.definitions import listing_change_approval
from hygoshop_workflows.runtime import Registry

registry = Registry()
listing_change_approval.register(registry)
