"""WSGI entry point (gunicorn serves `imagestore.wsgi:application`)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagestore.settings")
application = get_wsgi_application()
