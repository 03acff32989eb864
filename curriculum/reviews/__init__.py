"""Every way a review comes in or is read: one validation (``validation``), one idempotent store (``store``),
the columnar bulk writer (``bulk``), one (learner, time)-ordered reader (``reader``) and the file importers
(``importers``, one module per format)."""
