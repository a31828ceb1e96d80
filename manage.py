#!/usr/bin/env python
"""Django's command-line utility: `python manage.py serve`, `export_images`, ...

A wrong setting prints one line naming the variable and exits with status 2. The project's
commands use the embedded database of DATA_DIRECTORY when MONGODB_CONNECTION_STRING is unset.
"""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagestore.settings")
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "serve":
        from images.runtime.serving.cooperative import patch_for_serve

        patch_for_serve(sys.argv[2:])
    from images.runtime.serving.startup import embedded_database_for, load_settings_or_exit

    load_settings_or_exit(command or "manage.py")
    from django.core.management import execute_from_command_line

    with embedded_database_for(command):
        execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
