"""`python -m hygoshop_workflows [serve|migrate|worker [--definitions MODULE]]`."""

import sys

from hygoshop_platform.cli import run_service
from hygoshop_workflows.app import build
from hygoshop_workflows.config import SCHEMA, WorkflowsSettings

if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        from hygoshop_workflows.worker_main import run_worker

        run_worker(sys.argv[2:])
    else:
        run_service(WorkflowsSettings.from_env, build, SCHEMA)
