"""The platform's HTTP service: the event collector (`analytics-platform collector`)."""
