"""Domain rules: documents, paths, dates, metadata updates, image facts and the query language."""
