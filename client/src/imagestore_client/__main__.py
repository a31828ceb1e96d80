import sys

from imagestore_client.cli import main

sys.exit(main())
