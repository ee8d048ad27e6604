"""`python -I -S _pdeathsig_exec.py SIGNAL PARENT_PID COMMAND [ARG ...]`: ask the kernel
for SIGNAL when this process's parent dies (prctl PR_SET_PDEATHSIG, which survives exec),
then become COMMAND.

This is what `ManagedProcess` starts instead of a `preexec_fn`: Python code run in a
child between fork and exec can deadlock when the parent has other threads (gRPC
servers, thread pools do), and did, hanging a test session in `subprocess.Popen`.
Standard library only, no site import: it must start fast and import nothing of ours.
"""

import ctypes
import os
import sys

PR_SET_PDEATHSIG = 1


def main() -> None:
    sig, parent, argv = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(1)
    os.execvp(argv[0], argv)  # noqa: S606 (an exec of the given argv is the point)


main()
