"""The bottom layer: helpers every app may import, importing no app."""
