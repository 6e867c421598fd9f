"""Metering: prices, admission estimates, the SSE meter and upstream error mapping."""
