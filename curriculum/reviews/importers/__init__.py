"""Review-log files -> reviews: one module per format (fsrs, anki, hlr), the streaming CSV reader (csvstream),
and the import service (service.import_review_file)."""
