"""The Ray work the commands share: the cluster (connection, checks, actor sizing), the index
pipeline's steps (decode, embed) and its datasink, and the runs of `index`, `texts` and `tag`.

Only `options` is imported to parse a command line: it imports no Ray.
"""
