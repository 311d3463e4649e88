"""EssentiaServer: a self-hosted music analysis API.

`flask --app backend ...` finds `create_app` here. The import is deferred so that the analysis pool's workers,
which import `backend.analysis`, do not pay for Flask.
"""

__version__ = "1.0.0"


def create_app(config=None):
    from backend.app import create_app as _create_app

    return _create_app(config)
