"""Command-line tools on top of ``wlb`` (run from the repository root).

Run any of them as ``python -m tools.NAME --help``; ``python tools/NAME.py`` works too wherever
``wlb`` is importable (the project's virtual environment puts the repository on its path). No
tool imports another: what two tools share lives in ``wlb``.
"""
