"""The package-injector init container: download, verify and extract a package.

Standard library only, so the image stays small.
"""

__version__ = "0.1.0"
