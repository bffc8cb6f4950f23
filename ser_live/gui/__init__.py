"""The desktop app: a thin Qt layer over the engine (``ser_live.session``)."""
