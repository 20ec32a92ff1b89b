"""`python -m ldm_course.bench` runs `ldm-course bench`."""

from ldm_course.bench.run import main

if __name__ == "__main__":
    raise SystemExit(main())
