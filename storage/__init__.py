"""The index at rest and how it is asked, by concern; knows nothing of torch or Ray.

    schema.py   the index's schema: tables, keys, fields, served columns, `vidx.*` keys, limits
    table/      the Parquet table: parts, live rows, compaction, atomic publish, files, manifests,
                corpora, runs, digests, and the plans of an index run and a tag run
    milvus/     Milvus (milvus-lite or a server): the store, inserts, its errors, versions behind an
                alias, filters, and on milvus-lite each collection's exact copy
    query/      the query engine: every question (a statement, or a search) as one plan run by one
                executor, whatever door it came through
    options.py, progress.py, top_k.py   options declared once; a long loop's progress; the top-k with ties

Imports go one way: query -> milvus -> table; the Milvus adapter knows no dialect.
"""
