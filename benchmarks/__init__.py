"""Side-by-side benchmarks of the mirror against the distribution proxy, the upstream registry
itself and an nginx ``sendfile`` ceiling, all on 127.0.0.1 in one run (issue 6).

``python -m benchmarks run [--quick] [--out DIR]`` is the one command; see ``docs/benchmarks.md``.
Nothing here is imported by the mirror.
"""
