"""Failure emails through the saved EmailNotifier block named in settings.EMAIL_NOTIFIER_BLOCK.

Save the block once (UI or code):
    EmailNotifier(smtp_server=..., from_address=..., to_addresses=[...]).save(EMAIL_NOTIFIER_BLOCK)
"""

from prefect_etl_blocks import email_notifier

from {{ cookiecutter.module_name }}.settings import EMAIL_NOTIFIER_BLOCK

on_failure = email_notifier(
    subject="Flow {flow_name} failed: {flow_run_name}",
    notifier=EMAIL_NOTIFIER_BLOCK,
)
