"""The demo: a small chat whose users pay for their own AI."""
