"""Provisions: the three outbound kinds, from a caller's records to log entries and queued
deliveries (customer match, fraud checks, attribute exports)."""
