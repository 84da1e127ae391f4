"""Remove the files of options that were not chosen."""

import json
from pathlib import Path

# Answers arrive as one JSON string literal, so quotes, backslashes and newlines stay data.
ANSWERS = json.loads({{ cookiecutter | tojson | tojson }})
module = Path(ANSWERS["module_name"])
if ANSWERS["notifications"] != "email":
    (module / "alerts.py").unlink()
if ANSWERS["result_storage"] != "s3":
    (module / "storage.py").unlink()
