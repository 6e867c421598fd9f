"""Metering: prices, admission estimates, the SSE meter, the request and cut-off wire, upstream error
mapping, and reconciliation of estimated charges."""
