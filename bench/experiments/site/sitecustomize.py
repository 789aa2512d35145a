"""Loaded by Python at start-up when this directory is on PYTHONPATH (bench experiments only).

(The `fastpatch` experiment of the first runs was adopted as webhook/patch.py and removed; `bigbuf`,
tarfile's stream buffer of 1 MiB, measured no gain and went away with tarfile's stream mode.)
BENCH_EXPERIMENT=nofilter: the init container skips tarfile's data_filter second opinion for directories
too (links keep it; regular files already skip it). BENCH_EXPERIMENT=nopax: the tar reader as it was
before initcontainer/pax.py (pax `x` headers, and every member after any global pax header, parsed by
tarfile): the baseline for the pax fast path in the same command. Several: BENCH_EXPERIMENT=a+b. Lets the
benchmarks measure a proposed change on the real programs (`python -m webhook serve`, `python -m
initcontainer`) without editing them; production never has this directory on its path.
"""

import os

_wanted = set(filter(None, os.environ.get("BENCH_EXPERIMENT", "").replace("+", ",").split(",")))

if "nofilter" in _wanted:
    from initcontainer import tree as _tree

    _orig = _tree.Tree.second_opinion

    def _links_only(self, info):  # type: ignore[no-untyped-def]
        if info.issym() or info.islnk():
            _orig(self, info)

    _tree.Tree.second_opinion = _links_only  # type: ignore[method-assign]

if "nopax" in _wanted:
    from initcontainer import pax as _pax

    def _declined(*args):  # type: ignore[no-untyped-def]
        return None

    def _never_harmless(self, key, value):  # type: ignore[no-untyped-def]
        self.harmless = False
        dict.__setitem__(self, key, value)

    _pax.parse_extended = _declined
    _pax.GlobalHeaders.__setitem__ = _never_harmless  # type: ignore[method-assign]
