"""``python -m prunecli``: the ``prunecli`` command (what ``torchrun -m prunecli prune ...`` runs)."""

from prunecli.cli import main

if __name__ == "__main__":
    main()
