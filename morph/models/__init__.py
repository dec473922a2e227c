"""Model names: ``builtin``, short names, URLs and paths resolved to a file (downloading into the cache when asked), and a file loaded as a model of the right family."""
