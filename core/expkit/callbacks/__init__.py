"""Our own Lightning callbacks: only what Lightning does not ship."""
