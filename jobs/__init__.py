"""Entry points: `python -m jobs <command>`; each command is also a function of its module
(`from jobs.index import index`, `jobs.load.load`, `jobs.search.search`, ...).

Nothing is imported here, so the command line starts without Ray, torch or pymilvus.
"""
