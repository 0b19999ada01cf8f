"""The commands: `python -m jobs <command>`, one module each (its options declared once, a `run` for
the CLI, and a function of the same name: `jobs.index.index`, `jobs.load.load`, `jobs.search.search`,
...), the Ray work they share (pipeline/) and the HTTP server (server/). No command imports another.

Nothing is imported here, so the command line starts without Ray, torch or pymilvus.
"""
