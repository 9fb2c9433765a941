"""The read API: `analytics-platform api` serves a tenant's analytics to its read keys."""
