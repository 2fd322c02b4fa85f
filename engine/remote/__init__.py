"""durably's remote half: the wake-up wire and channel, and the ``Client`` class."""
