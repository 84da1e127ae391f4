"""Keep the files of the options chosen: one flow, transformation, warehouse and runner module
each, renamed to their plain names; remove the others."""

import json
from pathlib import Path

# Answers arrive as one JSON string literal, so quotes, backslashes and newlines stay data.
ANSWERS = json.loads({{ cookiecutter | tojson | tojson }})
module = Path(ANSWERS["module_name"])
shape = ANSWERS["shape"]
if shape == "batch" and ANSWERS["load_strategy"] == "incremental":
    shape = "batch_incremental"
elif shape == "partitioned" and ANSWERS["warehouse"] == "ducklake":
    shape = "partitioned_lake"
chosen = {
    "flow": f"flow_{shape}.py",
    "transform": f"transform_{shape}.py",
    "warehouse": f"warehouse_{ANSWERS['warehouse']}.py",
    "runner": f"runner_{ANSWERS['task_runner']}.py" if ANSWERS["shape"] == "partitioned" else None,
}
for role, keep in chosen.items():
    for path in sorted(module.glob(f"{role}_*.py")):
        if path.name == keep:
            path.rename(module / f"{role}.py")
        else:
            path.unlink()
if ANSWERS["notifications"] != "email":
    (module / "alerts.py").unlink()
if ANSWERS["result_storage"] != "s3":
    (module / "storage.py").unlink()
