"""Remove the files of options that were not chosen."""

import json
from pathlib import Path

ANSWERS = json.loads({{ cookiecutter | tojson | tojson }})
module = Path(ANSWERS["module_name"])
if ANSWERS["notifications"] != "email":
    (module / "alerts.py").unlink()
if ANSWERS["result_storage"] != "s3":
    (module / "storage.py").unlink()
