"""package-injector: a mutating admission webhook that delivers packages into Pods."""

__version__ = "0.1.0"
