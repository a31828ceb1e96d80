"""Domain rules: documents, paths, dates, metadata updates, image facts, the query language and
the errors they raise (`errors`: each with the HTTP status it answers, no HTTP code here)."""
