"""Framework shells: thin translations onto the core, no logic of their own."""
