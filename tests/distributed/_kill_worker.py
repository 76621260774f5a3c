"""A torchrun worker for test_ddp.py: the ``prunecli`` command, whose rank ``$KILL_RANK`` SIGKILLs itself right
after its ``$KILL_AFTER``-th checkpoint save (a crash no Python code of the run sees)."""

import os
import signal
import sys

import prunecli.engine.loop as loop
from prunecli.cli import main

_real_save, _saves = loop.save, []


def _save(*args, **kwargs):
    path = _real_save(*args, **kwargs)
    _saves.append(path)
    if len(_saves) == int(os.environ["KILL_AFTER"]) and os.environ["RANK"] == os.environ["KILL_RANK"]:
        os.kill(os.getpid(), signal.SIGKILL)
    return path


loop.save = _save
sys.argv = ["prunecli", *sys.argv[1:]]
main()
