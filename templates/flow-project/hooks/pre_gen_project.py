"""Validate the answers before anything is written; cookiecutter removes the output on failure."""

import json
import sys

# Answers arrive as one JSON string literal, so quotes, backslashes and newlines stay data.
ANSWERS = json.loads({{ cookiecutter | tojson | tojson }})

try:
    from prefect_etl_blocks.scaffold import AnswerError, validate_answers
except ImportError:
    sys.stderr.write("ERROR: install prefect-etl-blocks first (pip install prefect-etl-blocks).\n")
    sys.exit(1)

try:
    validate_answers(ANSWERS)
except AnswerError as exc:
    sys.stderr.write(f"ERROR: {exc}\n")
    sys.exit(1)
