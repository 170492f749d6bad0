"""cnnbench's Hydra launcher, ``hydra/launcher=pool``: each job of a sweep in a fresh process,
on GPUs of its own (or a fair share of the CPU cores), several at a time.

``hydra_plugins`` is a namespace package (no ``__init__.py``): Hydra runs every module under
it whose name does not start with ``_`` on each start, to find launchers. So only launcher.py and
slurm.py are found that way; they import nothing heavy (torch) at the top, and do without ``from
__future__ import annotations``, since Hydra runs them before entering them in ``sys.modules``,
where a dataclass looks up its annotations.
"""
