"""Small generic helpers: errors, logging, atomic writes, devices, config resolvers. No domain logic;
nothing here imports from the rest of `src`."""

from expkit.utils.resolvers import register_resolvers

register_resolvers()
