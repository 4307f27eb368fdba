"""mattlib: the MATT study (multiple-instance attention for long-tail music genre classification).

Sub-packages follow the study's data flow, each importing only the ones before it::

    data -> features -> models -> training -> evaluation -> study -> views -> runner

``pipeline`` (``matt study``) and ``cli`` drive every stage; the top-level modules (``paths``, ``locks``,
``processes``, ``provenance``, ``executors``, ``registry``, ``devices``, ``atomic``, ``errors``) are shared
utilities, listed in the README's architecture section.
"""

__version__ = "0.1.0"
