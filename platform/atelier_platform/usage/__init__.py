"""What a project may ask of the platform and what it used: quotas, rate limits, request caps,
idempotency records, and usage reports."""
