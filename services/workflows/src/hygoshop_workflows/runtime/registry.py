"""Workflow types and operator task kinds a process knows, by name and version.

A definitions module builds one `Registry` named `registry`:

    registry = Registry()
    registry.task_kind(TaskKind("listing_change", edit_schema={...}, sla_seconds=3600))

    @registry.workflow("listing_change_approval", version=1, input_schema={...},
                       starts_on=[Trigger("catalog.listing.created", key=..., input=...)])
    async def listing_change_approval(ctx: WorkflowContext, input: dict) -> dict: ...

A run is pinned to the version it started with; a new version is a new function
registered beside the old one until no run of the old one is left. Workers claim only runs
of the (type, version) pairs their registry holds.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jsonschema

from hygoshop_platform.bus import Delivery
from hygoshop_platform.errors import FieldViolation, InvalidArgument

if TYPE_CHECKING:
    from hygoshop_workflows.runtime.context import WorkflowContext

JsonObject = dict[str, Any]
WorkflowFn = Callable[["WorkflowContext", JsonObject], Awaitable[JsonObject | None]]


@dataclass(frozen=True, slots=True)
class Trigger:
    """A bus event that starts a run (idempotently, per business key)."""

    event_type: str
    """A topic pattern (`orders.cart.updated`, `catalog.listing.*`)."""
    key: Callable[[Delivery], str]
    """The run's business key, read from the event."""
    input: Callable[[Delivery], JsonObject] = field(default=lambda _: {})
    """The run's input, read from the event."""


@dataclass(frozen=True, slots=True)
class SignalTrigger:
    """A bus event that signals the run with the event's business key, if it exists."""

    event_type: str
    key: Callable[[Delivery], str]
    signal: str
    """The signal's name, as the workflow waits for it."""
    payload: Callable[[Delivery], JsonObject] = field(default=lambda _: {})


@dataclass(frozen=True, slots=True)
class TaskKind:
    """A kind of decision handed to people."""

    name: str
    edit_schema: JsonObject = field(default_factory=lambda: {"type": "object"})
    """JSON Schema of the payload an EDIT outcome carries."""
    sla_seconds: float = 24 * 3600
    """Unclaimed (or with an expired claim) this long after creation, the task escalates."""
    description: str = ""


@dataclass(frozen=True, slots=True)
class WorkflowDefinition:
    workflow_type: str
    version: int
    fn: WorkflowFn
    input_schema: JsonObject | None = None
    """JSON Schema the start input must satisfy (checked before anything is written)."""
    starts_on: tuple[Trigger, ...] = ()
    signals_on: tuple[SignalTrigger, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.workflow_type}@{self.version}"


class Registry:
    def __init__(self) -> None:
        self._definitions: dict[tuple[str, int], WorkflowDefinition] = {}
        self._task_kinds: dict[str, TaskKind] = {}

    def workflow(
        self,
        workflow_type: str,
        *,
        version: int = 1,
        input_schema: JsonObject | None = None,
        starts_on: Sequence[Trigger] = (),
        signals_on: Sequence[SignalTrigger] = (),
    ) -> Callable[[WorkflowFn], WorkflowFn]:
        """Register the decorated async function as `workflow_type` at `version`."""
        if version < 1:
            raise ValueError("workflow versions start at 1")
        if input_schema is not None:
            jsonschema.Draft202012Validator.check_schema(input_schema)

        def register(fn: WorkflowFn) -> WorkflowFn:
            key = (workflow_type, version)
            if key in self._definitions:
                raise ValueError(f"{workflow_type}@{version} is registered twice")
            self._definitions[key] = WorkflowDefinition(
                workflow_type, version, fn, input_schema, tuple(starts_on), tuple(signals_on)
            )
            return fn

        return register

    def task_kind(self, kind: TaskKind) -> TaskKind:
        if kind.name in self._task_kinds:
            raise ValueError(f"task kind {kind.name!r} is registered twice")
        jsonschema.Draft202012Validator.check_schema(kind.edit_schema)
        self._task_kinds[kind.name] = kind
        return kind

    def get(self, workflow_type: str, version: int) -> WorkflowDefinition | None:
        return self._definitions.get((workflow_type, version))

    def newest(self, workflow_type: str) -> WorkflowDefinition | None:
        versions = [d for (t, _), d in self._definitions.items() if t == workflow_type]
        return max(versions, key=lambda d: d.version, default=None)

    def definitions(self) -> list[WorkflowDefinition]:
        return list(self._definitions.values())

    def type_versions(self) -> list[str]:
        """`type@version` of every definition: what a worker of this registry may claim."""
        return sorted(d.key for d in self._definitions.values())

    def task_kind_named(self, name: str) -> TaskKind | None:
        return self._task_kinds.get(name)


def check_json(schema: JsonObject, value: Any, field_prefix: str) -> None:
    """INVALID_ARGUMENT naming each offending field (`input.title`) unless `value` fits."""
    validator = jsonschema.Draft202012Validator(schema)
    violations = [
        FieldViolation(
            ".".join([field_prefix, *(str(p) for p in error.absolute_path)]), error.message
        )
        for error in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    ]
    if violations:
        raise InvalidArgument(violations[:20])


def load_registry(module: str) -> Registry:
    """The `registry` of definitions module `module` (WORKFLOW_DEFINITIONS)."""
    loaded = importlib.import_module(module)
    registry = getattr(loaded, "registry", None)
    if not isinstance(registry, Registry):
        raise TypeError(f"module {module!r} has no `registry` of type Registry")
    return registry
