"""The ``tapdb`` command line (argparse, standard library only)."""
