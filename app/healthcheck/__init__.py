"""Health checks: a Celery worker probes each session and writes status.healthCheck."""
