"""Testing kit: a fake OpenRouter and fixtures."""

__all__: list[str] = []
