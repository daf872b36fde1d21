"""OpenAI-compatible endpoints under ``/v1/``: models, chat completions, responses and image generations.

They map OpenAI's request shapes onto ordinary Atelier jobs (``submit_job``: the same validation,
screening, idempotency and audit as ``POST /api/v1/jobs/``), wait for the job, and answer in
OpenAI's shapes. Content that a reviewer has not approved (or screening has not released) is
never put in an answer: see ``services`` for the pending-review shapes (``responses`` for the Responses API's).
"""
