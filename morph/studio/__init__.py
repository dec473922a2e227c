"""morph studio: a scene file on sliders in a local web page (``morph studio SCENE``).

``frames`` is the one door into morph's rendering code; ``edits`` splices values into the YAML text;
``controls`` lists what the page can edit; ``server`` is the token-guarded ASGI app that ties them together.
"""
