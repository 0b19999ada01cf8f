"""The Parquet table: parts written atomically and named by their rows, the live rows readers see,
compaction, source files and manifests, text corpora, run records, and the plans of a run."""
