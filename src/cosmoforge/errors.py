"""Errors that name what the user has to fix."""


class CosmoforgeError(Exception):
    """Base class: a problem with the user's input or configuration, shown without a traceback."""


class ConfigError(CosmoforgeError):
    pass


class SeedError(CosmoforgeError):
    """A seed row or seed file is unusable; the message names the file, row and field."""


class TemplateError(CosmoforgeError):
    pass


class ModelOutputError(CosmoforgeError):
    pass


class TopicError(CosmoforgeError):
    """Topic clustering: bad settings, an unusable decisions file, stale assignments."""
