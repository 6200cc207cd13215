"""Implicit models trained block by block (Gautam, Anderson, Sojoudi and El Ghaoui), and
the end-to-end baseline. Private: import the public names from :mod:`sklearn_greedy`.

See ``docs/architecture.md`` for what each module holds.
"""
