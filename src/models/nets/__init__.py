"""Plain torch networks: usable without Lightning (`net.load_state_dict(...)` and go)."""
