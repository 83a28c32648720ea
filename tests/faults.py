"""Faults the tests inject into the kit's writes: a SIGKILL before each system call a piece of code makes, and
errors (a full disk, a read-only filesystem) at each step of a write.

A kill changes what a folder holds only through the system calls made before it, so killing a child process
before each of them in turn leaves every state a kill anywhere could leave (a writer can add a point of its own
inside a write, with `step()`, to leave a file half-written).
"""

import builtins
import errno
import io
import json
import os
import signal
import traceback

# The calls whose order decides what a kill leaves on disk.
SYSTEM_CALLS = ("open", "mkdir", "fsync", "replace", "rename", "link", "unlink", "rmdir")
# What one child may take before it is stopped (it saves a few small files).
CHILD_SECONDS = 60
# The errors a write meets when the disk fills or the filesystem turns read-only, injected at each step.
WRITE_ERRORS = (errno.ENOSPC, errno.EROFS)

# What the tests try, counted here for tests/README.md's table (tests/test_readme.py compares them).

# The steps of a write, and the writes they belong to: True, one that may replace the file; False, a never-overwrite
# write (whose last three steps only a filesystem without hard links takes).
WRITE_STEPS = {
    "create": (True, False), "write": (True, False), "fsync": (True, False), "rename": (True,), "link": (False,),
    "rename without replacing": (False,), "exclusive create": (False,), "rename over the exclusive create": (False,),
    "folder fsync": (True, False),
}
WRITE_FAULTS = [(step, overwrite, code) for step, modes in WRITE_STEPS.items() for overwrite in modes
                for code in WRITE_ERRORS]

# The kill points of one backup save (epoch 2 over epoch 1: the callback reads its metadata, writes the weights,
# then the metadata that names them, then removes epoch 1's weights) and of one model.keras save: a SIGKILL before
# each system call the kit makes, and one halfway through the file's bytes (`kill_points`).
SAVE_KILL_POINTS = {
    "backup": ("open mkdir open open mid-write open fsync replace open fsync "
               "mkdir open open open fsync replace open fsync unlink").split(),
    "model.keras": "mkdir open open mid-write open fsync replace open fsync".split(),
}


def _child(action, kill_at: int) -> list[str]:
    """Runs `action(step)` with a SIGKILL before the `kill_at`-th step; returns the steps taken (no kill came)."""
    taken = []

    def step(name="mid-write"):
        if len(taken) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        taken.append(name)

    def counted(name, real):
        def call(*args, **kwargs):
            step(name)
            return real(*args, **kwargs)
        return call

    for name in SYSTEM_CALLS:
        setattr(os, name, counted(name, getattr(os, name)))
    io.open = builtins.open = counted("open", io.open)
    action(step)
    return taken


def kill_points(prepare, action, check) -> int:
    """Kills a forked child running `action` before each of its steps in turn, and checks what each kill left.

    The child runs only the kit's Python and system calls (no TensorFlow op: a forked child has none of the
    parent's threads), and dies by a real SIGKILL: no `finally`, no `atexit`, no flush.

    Args:
        prepare: `prepare(point)` sets up the files the child starts from, in this process.
        action: `action(step)` runs in the child; it may call `step()` for a kill point of its own.
        check: `check(point)` runs in this process after the child died at `point`; and once more, with
            `point` None, after a child that ran to its end.

    Returns:
        The kill points: the steps of one whole run of `action`, by name (`SYSTEM_CALLS`, or `"mid-write"`).
    """
    point = 0
    while True:
        prepare(point)
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - the child's exit status and pipe report to the parent
            os.close(read)
            signal.alarm(CHILD_SECONDS)  # a child that hangs dies of SIGALRM, which the parent reports
            try:
                os.write(write, json.dumps(_child(action, point)).encode())
                os._exit(0)
            except BaseException:
                os.write(write, traceback.format_exc().encode()[-4000:])
                os._exit(3)
        os.close(write)
        _, status = os.waitpid(child, 0)
        with os.fdopen(read, "rb") as pipe:
            said = pipe.read().decode()
        if os.WIFEXITED(status):
            assert os.WEXITSTATUS(status) == 0, said
            steps = json.loads(said)
            assert len(steps) == point, steps
            check(None)
            return steps
        assert os.WTERMSIG(status) == signal.SIGKILL, f"the child died of signal {os.WTERMSIG(status)}: {said}"
        check(point)
        point += 1
