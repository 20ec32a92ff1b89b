import sys

from ldm_course.cli import main

sys.exit(main())
