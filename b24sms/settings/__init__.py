"""Settings package: base (shared), local (make run), test (pytest), production (docker compose).

Every value comes from the environment through django-environ, read in ``base``.
"""
