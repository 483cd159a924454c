"""Small helpers shared by the entry points (train, eval): logging, validation, instantiation, artifacts."""

from src.utils.resolvers import register_resolvers

register_resolvers()
