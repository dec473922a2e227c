"""Scripts that train the built-in networks and draw the README's figures: an application layer beside ``bench/``, run as ``python -m morph.training.NAME``; the library never imports it."""
