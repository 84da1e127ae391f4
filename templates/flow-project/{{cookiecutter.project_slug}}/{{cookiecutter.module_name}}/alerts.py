"""Failure emails through the saved EmailNotifier block named in EMAIL_NOTIFIER_BLOCK below.

Save the block once (UI or code):
    EmailNotifier(smtp_server=..., from_address=..., to_addresses=[...]).save(EMAIL_NOTIFIER_BLOCK)
"""

from prefect_etl_blocks import email_notifier

# The saved EmailNotifier block that sends the failure emails.
EMAIL_NOTIFIER_BLOCK = {{ (cookiecutter.project_slug ~ "-email") | pyrepr }}

on_failure = email_notifier(
    subject="Flow {flow_name} failed: {flow_run_name}",
    notifier=EMAIL_NOTIFIER_BLOCK,
)
