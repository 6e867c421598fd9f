"""Metering: what a request can be billed for (``billable``, sized media in ``media``), the prices
(``model_price``, the cached list in ``pricing``), bounded admission (``estimate``), what the
upstream is told (``limits``), per-endpoint descriptions (``dialects``), the running meter
(``meter``, reading billable output through ``output``), the request and cut-off wire, refusals,
upstream error mapping, and reconciliation of estimated charges."""
