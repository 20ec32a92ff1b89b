import sys

from ldm_course.cli.main import main

sys.exit(main())
